// A CodeMirror 6 editor in a React component. CodeMirror's styles go
// into constructed style sheets (adoptedStyleSheets), which the console's
// CSP (style-src 'self', no inline styles) allows.
import { useEffect, useRef } from "react";
import { EditorState } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, highlightActiveLine } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { bracketMatching, indentOnInput } from "@codemirror/language";
import { lintGutter, setDiagnostics } from "@codemirror/lint";

// Editor shows value and reports edits through onChange; diagnostics
// ({row, col, message}, 1-based) are drawn inline as lint marks.
export function Editor({ value, onChange, language, diagnostics, label }) {
  const host = useRef(null);
  const view = useRef(null);
  const changed = useRef(onChange);
  changed.current = onChange;

  useEffect(() => {
    const v = new EditorView({
      parent: host.current,
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
