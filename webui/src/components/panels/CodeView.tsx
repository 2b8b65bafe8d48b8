/** Read-only code (in a labelled region), highlighted when the language is known (highlight.js escapes it). */

import { highlight } from "../../ui/Markdown";

export function CodeView({
  code,
  language,
  label,
}: {
  code: string;
  language: string | undefined;
  label: string;
}) {
  const html = highlight(code, language);
  return (
    <section aria-label={label}>
      <pre className="panel-code" title={label}>
        {html === null ? (
          <code>{code}</code>
        ) : (
          // biome-ignore lint/security/noDangerouslySetInnerHtml: highlight.js output escapes the code.
          <code className="hljs" dangerouslySetInnerHTML={{ __html: html }} />
        )}
      </pre>
    </section>
  );
}
