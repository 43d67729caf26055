// A picked profile photo, made small in the browser before it is sent: the
// tip page shows it at 72 px to phones on slow networks, so a 2 MB picture
// becomes a square JPEG of a few tens of KB (and any metadata, such as where
// it was taken, is left behind).
import { checkPhotoFile, type Checked } from "./forms";

/** Pixels per side: 72 px shown, up to 4x on sharp screens. */
const SIDE = 288;
const QUALITY = 0.85;

/** The centred square of `file`, scaled to at most SIDE px, as JPEG bytes; undefined when the browser cannot read it. */
export async function shrinkPhoto(file: Blob): Promise<Uint8Array | undefined> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return undefined;
  }
  const square = Math.min(bitmap.width, bitmap.height);
  const side = Math.min(SIDE, square);
  const canvas = document.createElement("canvas");
  canvas.width = side;
  canvas.height = side;
  const ctx = canvas.getContext("2d");
  if (!ctx || side === 0) return undefined;
  // JPEG has no transparency: a transparent PNG goes on white, not black.
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, side, side);
  ctx.drawImage(bitmap, (bitmap.width - square) / 2, (bitmap.height - square) / 2, square, square, 0, 0, side, side);
  bitmap.close();
  const blob = await new Promise<Blob | null>((done) => canvas.toBlob(done, "image/jpeg", QUALITY));
  return blob ? new Uint8Array(await blob.arrayBuffer()) : undefined;
}

/** The photo a worker picked, checked (size, type) and made small; or the message key of what is wrong with it. */
export async function pickedPhoto(file: File | undefined): Promise<Checked<Uint8Array>> {
  const checked = checkPhotoFile(file);
  if (!checked.ok) return { ok: false, problem: checked.problem };
  const small = await shrinkPhoto(file!);
  return small ? { ok: true, value: small } : { ok: false, problem: "err_photoRead" };
}
