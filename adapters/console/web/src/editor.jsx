// A CodeMirror 6 editor in a React component, mounted in a shadow root:
// CodeMirror (style-mod) writes its styles into a <style> element in a
// document, which the console's CSP (style-src 'self') refuses, but into
// a constructed style sheet (adoptedStyleSheets) in a shadow root, which
// it allows. The page's stylesheet does not reach into the shadow root,
// so the editor's own look is an EditorView theme.
import { useEffect, useRef } from "react";
import { EditorState } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, highlightActiveLine } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { bracketMatching, indentOnInput } from "@codemirror/language";
import { lintGutter, setDiagnostics } from "@codemirror/lint";

const theme = EditorView.theme({
  "&": { height: "100%", backgroundColor: "#fff", fontSize: "13px" },
  ".cm-scroller": { fontFamily: "ui-monospace, SFMono-Regular, Menlo, monospace", overflow: "auto" },
  ".cm-gutters": { backgroundColor: "#f6f4f1", color: "#999", borderRight: "1px solid #e4e0dc" },
  ".cm-activeLine": { backgroundColor: "#fdf6f8" },
  "&.cm-focused": { outline: "none" },
});

// Editor shows value and reports edits through onChange; diagnostics
// ({row, col, message}, 1-based) are drawn inline as lint marks.
export function Editor({ value, onChange, language, diagnostics, label }) {
  const host = useRef(null);
  const view = useRef(null);
  const changed = useRef(onChange);
  changed.current = onChange;

  useEffect(() => {
    const shadow = host.current.shadowRoot || host.current.attachShadow({ mode: "open" });
    const parent = document.createElement("div");
    parent.className = "cm-parent";
    parent.style.height = "100%"; // CSSOM, which the CSP allows, unlike a style attribute
    shadow.replaceChildren(parent);
    const v = new EditorView({
      root: shadow,
      parent,
      state: EditorState.create({
        doc: value,
        extensions: [
          lineNumbers(),
          history(),
          highlightActiveLine(),
          bracketMatching(),
          indentOnInput(),
          lintGutter(),
          keymap.of([...defaultKeymap, ...historyKeymap]),
          language || [],
          theme,
          EditorView.contentAttributes.of({ "aria-label": label || "editor" }),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) changed.current(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    return () => v.destroy();
    // The editor is made once per mount: the parent remounts it (key) to
    // show another file.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const doc = v.state.doc;
    const marks = (diagnostics || []).map((d) => {
      const line = doc.line(Math.min(Math.max(d.row || 1, 1), doc.lines));
      const from = Math.min(line.from + Math.max((d.col || 1) - 1, 0), line.to);
      return { from, to: Math.max(from, line.to), severity: "error", message: d.message };
    });
    v.dispatch(setDiagnostics(v.state, marks));
  }, [diagnostics]);

  return <div className="cm-host" ref={host} />;
}
