/**
 * The browser's half of `ImageCodec`: decoding with createImageBitmap (EXIF
 * orientation applied), drawing on a canvas at the new size, encoding with
 * toBlob. A type the browser cannot encode (toBlob falls back to PNG) is
 * reported as null, never passed off as what was asked for.
 */

import type { ImageCodec } from "./attachments";
import type { ImageMediaType } from "./protocol";

/** A codec that decodes each file once (the tries of one image share it). */
export function browserCodec(): ImageCodec {
  const decoded = new WeakMap<Blob, Promise<ImageBitmap>>();
  const bitmap = (file: Blob) => {
    let p = decoded.get(file);
    if (!p) {
      p = createImageBitmap(file);
      decoded.set(file, p);
    }
    return p;
  };
  return {
    async measure(file) {
      const bmp = await bitmap(file);
      return { width: bmp.width, height: bmp.height };
    },
    async encode(file, width, height, type: ImageMediaType, quality) {
      const bmp = await bitmap(file);
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      const ctx = canvas.getContext("2d");
      if (!ctx) return null;
      // JPEG has no transparency: what was see-through becomes white, not black.
      if (type === "image/jpeg") {
        ctx.fillStyle = "#fff";
        ctx.fillRect(0, 0, width, height);
      }
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(bmp, 0, 0, width, height);
      const blob = await new Promise<Blob | null>((resolve) =>
        canvas.toBlob(resolve, type, quality),
      );
      return blob && blob.type === type ? blob : null;
    },
    release(file) {
      const p = decoded.get(file);
      decoded.delete(file);
      void p?.then(
        (bmp) => bmp.close(),
        () => undefined,
      );
    },
    base64(blob) {
      return new Promise((resolve, reject) => {
        const reader = new FileReader();
        reader.onload = () => {
          const url = String(reader.result);
          resolve(url.slice(url.indexOf(",") + 1));
        };
        reader.onerror = () => reject(reader.error);
        reader.readAsDataURL(blob);
      });
    },
  };
}
