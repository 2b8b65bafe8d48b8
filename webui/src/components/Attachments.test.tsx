// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { StrictMode } from "react";
import { afterEach, expect, test } from "vitest";
import type { AttachmentLimits, ImageCodec } from "../lib/attachments";
import {
  AttachButton,
  type AttachmentsState,
  AttachmentTray,
  MessageAttachments,
  useAttachments,
} from "./Attachments";

afterEach(cleanup);

const limits: AttachmentLimits = {
  maxAttachments: 2,
  maxImageBytes: 1000,
  maxImageEdge: 8000,
  maxTextAttachmentChars: 50,
};
/** Every image 10×10 pixels, every encoding 100 bytes. */
const codec: ImageCodec = {
  measure: async () => ({ width: 10, height: 10 }),
  encode: async (_f, _w, _h, type) => new Blob([new Uint8Array(100)], { type }),
  base64: async () => "AAAA",
};

let state: AttachmentsState | null = null;
function Harness() {
  const files = useAttachments(limits, codec);
  state = files;
  return (
    <>
      <AttachButton files={files} disabled={false} />
      <AttachmentTray files={files} />
    </>
  );
}

const text = (name: string, body: string) => new File([body], name, { type: "text/plain" });

test("picked files are previewed in order, the count is kept, one is removed", async () => {
  render(
    <StrictMode>
      <Harness />
    </StrictMode>,
  );
  const input = screen.getByTestId("attach-input") as HTMLInputElement;
  await act(async () => {
    fireEvent.change(input, {
      target: {
        files: [
          new File([new Uint8Array(200)], "a.png", { type: "image/png" }),
          text("b.txt", "hello"),
          text("c.txt", "one too many"),
        ],
      },
    });
  });
  await waitFor(() => expect(screen.getAllByTestId("attach-preview")).toHaveLength(2));
  const names = screen.getAllByTestId("attach-preview").map((li) => li.textContent);
  expect(names[0]).toContain("a.png");
  expect(names[1]).toContain("b.txt5 characters");
  expect(screen.getByRole("alert").textContent).toContain(
    "Not attached: c.txt: at most 2 files per message",
  );
  expect(state?.outgoing()).toEqual([
    { type: "image", mediaType: "image/png", data: "AAAA", name: "a.png" },
    { type: "text", name: "b.txt", text: "hello" },
  ]);
  fireEvent.click(screen.getByRole("button", { name: "Remove a.png" }));
  expect(screen.getAllByTestId("attach-preview")).toHaveLength(1);
  // Room again for one more.
  await act(async () => {
    fireEvent.change(input, { target: { files: [text("d.txt", "x".repeat(51))] } });
  });
  await waitFor(() =>
    expect(screen.getByRole("alert").textContent).toContain(
      "d.txt: 51 characters; at most 50 per text file",
    ),
  );
  expect(screen.getAllByTestId("attach-preview")).toHaveLength(1);
});

test("the transcript shows images, text files, and what a snapshot left out", () => {
  render(
    <MessageAttachments
      items={[
        {
          type: "image",
          mediaType: "image/png",
          name: "a.png",
          size: 3,
          data: "AAAA",
          omitted: false,
        },
        { type: "text", name: "n.txt", size: 2, text: "hi", omitted: false },
        { type: "image", mediaType: "image/gif", name: "old.gif", size: 2048, omitted: true },
      ]}
    />,
  );
  const img = screen.getByTestId("message-image") as HTMLImageElement;
  expect(img.src).toBe("data:image/png;base64,AAAA");
  const button = screen.getByRole("button", { name: "Enlarge a.png (3 bytes)" });
  expect(button.getAttribute("aria-expanded")).toBe("false");
  fireEvent.click(button);
  expect(
    screen.getByRole("button", { name: "Shrink a.png (3 bytes)" }).getAttribute("aria-expanded"),
  ).toBe("true");
  expect(screen.getByText("n.txt · 2 characters")).toBeTruthy();
  expect(screen.getByText("old.gif · 2 KB (not kept in this view)")).toBeTruthy();
});
