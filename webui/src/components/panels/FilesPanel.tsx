/** The working tree as a tree, and a read-only viewer. */

import { useMemo, useState } from "react";
import type { Status } from "../../lib/protocol";
import {
  buildTree,
  languageOf,
  parseFile,
  parseFiles,
  type Requester,
  type TreeNode,
} from "../../lib/requests";
import { PanelPreparing, PanelStatus } from "./ChangesPanel";
import { CodeView } from "./CodeView";
import { latest, useReply, useTreeReply } from "./useReply";

function Tree({
  nodes,
  selected,
  onOpen,
}: {
  nodes: TreeNode[];
  selected: string | null;
  onOpen: (path: string) => void;
}) {
  return (
    <ul className="tree">
      {nodes.map((n) =>
        n.children ? (
          <li key={`d:${n.path}`}>
            <details>
              <summary>{n.name}/</summary>
              <Tree nodes={n.children} selected={selected} onOpen={onOpen} />
            </details>
          </li>
        ) : (
          <li key={`f:${n.path}`}>
            <button
              type="button"
              className={`tree-file ${selected === n.path ? "selected" : ""}`}
              aria-pressed={selected === n.path}
              aria-label={n.path}
              onClick={() => onOpen(n.path)}
            >
              {n.name}
            </button>
          </li>
        ),
      )}
    </ul>
  );
}

export function FilesPanel({
  requester,
  workspaceId,
  refresh,
  status,
}: {
  requester: Requester;
  workspaceId: string;
  refresh: number;
  /** The workspace's status: while `starting` the VM may not have it, so nothing is asked. */
  status?: Status;
}) {
  const [selected, setSelected] = useState<string | null>(null);
  const { reply: files, preparing } = useTreeReply(status, `${workspaceId}:${refresh}`, async () =>
    parseFiles(await requester.request(workspaceId, "files")),
  );
  const file = useReply(
    selected === null ? null : `${workspaceId}:${selected}:${refresh}`,
    async () => parseFile(await requester.request(workspaceId, "file", { path: selected })),
  );
  const listed = latest(files);
  const tree = useMemo(() => buildTree(listed?.files ?? []), [listed]);
  const content = latest(file);
  if (preparing) return <PanelPreparing what="files" />;
  return (
    <div className="panel-body">
      <PanelStatus reply={files} what="the files" />
      {listed && (
        <nav aria-label="Files">
          {listed.files.length === 0 && <p className="muted small">No files yet.</p>}
          <Tree nodes={tree} selected={selected} onOpen={setSelected} />
          {listed.truncated && <p className="muted small">Only the first files are listed.</p>}
        </nav>
      )}
      {selected !== null && (
        <section className="panel-detail" aria-label={`File ${selected}`}>
          <h3 className="small">{selected}</h3>
          <PanelStatus reply={file} what="the file" />
          {content &&
            (content.binary ? (
              <p className="muted small">A binary file ({content.size} bytes): not shown.</p>
            ) : (
              <>
                <CodeView
                  code={content.content}
                  language={languageOf(selected)}
                  label={`Content of ${selected}`}
                />
                {content.truncated && (
                  <p className="muted small">
                    A large file ({content.size} bytes): only its beginning is shown.
                  </p>
                )}
              </>
            ))}
        </section>
      )}
    </div>
  );
}
