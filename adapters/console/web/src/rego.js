// A small Rego mode for CodeMirror 6: enough to highlight keywords,
// strings, raw strings, numbers, comments and rule heads. OPA itself
// (through /console/api/policies/check) is the parser that counts.
import { StreamLanguage, HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { tags } from "@lezer/highlight";

const keywords = new Set([
  "package", "import", "default", "not", "with", "as", "some", "every", "in", "if", "contains", "else",
]);
const atoms = new Set(["true", "false", "null", "input", "data"]);

const rego = StreamLanguage.define({
  name: "rego",
  startState: () => ({ inRaw: false }),
  token(stream, state) {
    if (state.inRaw) {
      if (stream.skipTo("`")) {
        stream.next();
        state.inRaw = false;
      } else stream.skipToEnd();
      return "string";
    }
    if (stream.eatSpace()) return null;
    if (stream.match("#")) {
      stream.skipToEnd();
      return "comment";
    }
    if (stream.match("`")) {
      state.inRaw = true;
      return "string";
    }
    if (stream.match(/^"(?:[^"\\]|\\.)*"?/)) return "string";
    if (stream.match(/^-?\d+(\.\d+)?([eE][+-]?\d+)?/)) return "number";
    if (stream.match(/^(:=|==|!=|<=|>=|=|<|>|\||&|\+|-|\*|\/|%)/)) return "operator";
    const word = stream.match(/^[A-Za-z_][A-Za-z0-9_]*/);
    if (word) {
      const w = word[0];
      if (keywords.has(w)) return "keyword";
      if (atoms.has(w)) return "atom";
      // A rule head starts a line: `allow if`, `reason := ...`.
      if (stream.column() === 0) return "def";
      if (stream.peek() === "(") return "variableName.function";
      return "variableName";
    }
    stream.next();
    return null;
  },
  languageData: { commentTokens: { line: "#" } },
});

const style = HighlightStyle.define([
  { tag: tags.keyword, color: "#8a1c7c", fontWeight: "bold" },
  { tag: tags.atom, color: "#1a5fb4" },
  { tag: tags.string, color: "#26734d" },
  { tag: tags.number, color: "#b5651d" },
  { tag: tags.comment, color: "#888", fontStyle: "italic" },
  { tag: tags.definition(tags.variableName), color: "#b3123e", fontWeight: "bold" },
  { tag: tags.function(tags.variableName), color: "#3d5a99" },
  { tag: tags.operator, color: "#555" },
]);

export function regoLanguage() {
  return [rego, syntaxHighlighting(style)];
}
