/** A line diff for Edit/MultiEdit/Write inputs, shown as a unified diff. */

export interface DiffLine {
  op: " " | "-" | "+";
  text: string;
}

/** Above this many line pairs the LCS table costs too much: show remove-all/add-all. */
export const MAX_DIFF_CELLS = 4_000_000;

/** The lines of `a` turned into `b`, by longest common subsequence. */
export function diffLines(a: string, b: string): DiffLine[] {
  const x = a === "" ? [] : a.split("\n");
  const y = b === "" ? [] : b.split("\n");
  // Common head and tail first: edits are usually small.
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) head++;
  let tail = 0;
  while (
    tail < x.length - head &&
    tail < y.length - head &&
    x[x.length - 1 - tail] === y[y.length - 1 - tail]
  )
    tail++;
  const xs = x.slice(head, x.length - tail);
  const ys = y.slice(head, y.length - tail);
  const out: DiffLine[] = x.slice(0, head).map((text) => ({ op: " ", text }));
  if (xs.length * ys.length > MAX_DIFF_CELLS) {
    out.push(
      ...xs.map((text) => ({ op: "-" as const, text })),
      ...ys.map((text) => ({ op: "+" as const, text })),
    );
  } else {
    const n = xs.length;
    const m = ys.length;
    const lcs = new Uint32Array((n + 1) * (m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * (m + 1) + j] =
          xs[i] === ys[j]
            ? lcs[(i + 1) * (m + 1) + j + 1]! + 1
            : Math.max(lcs[(i + 1) * (m + 1) + j]!, lcs[i * (m + 1) + j + 1]!);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && xs[i] === ys[j]) {
        out.push({ op: " ", text: xs[i]! });
        i++;
        j++;
      } else if (i < n && (j === m || lcs[(i + 1) * (m + 1) + j]! >= lcs[i * (m + 1) + j + 1]!)) {
        out.push({ op: "-", text: xs[i]! });
        i++;
      } else {
        out.push({ op: "+", text: ys[j]! });
        j++;
      }
    }
  }
  out.push(...x.slice(x.length - tail).map((text) => ({ op: " " as const, text })));
  return out;
}

/** Keep `context` unchanged lines around changes; runs beyond become a "…" marker (null). */
export function withContext(lines: DiffLine[], context = 3): (DiffLine | null)[] {
  const keep = new Array<boolean>(lines.length).fill(false);
  lines.forEach((l, i) => {
    if (l.op === " ") return;
    for (let k = Math.max(0, i - context); k <= Math.min(lines.length - 1, i + context); k++)
      keep[k] = true;
  });
  const out: (DiffLine | null)[] = [];
  let skipped = false;
  lines.forEach((l, i) => {
    if (keep[i]) {
      out.push(l);
      skipped = false;
    } else if (!skipped) {
      out.push(null);
      skipped = true;
    }
  });
  return out;
}
