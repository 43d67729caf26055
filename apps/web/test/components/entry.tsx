// What the component tests render in the browser, on window.components:
// the worker's settings form (Section) and the photo picker's check-and-
// shrink step, as the settings screen uses them, with nothing else around.
import { createRoot } from "react-dom/client";
import { Section, type Refusal } from "../../src/app/w/settings/section";
import { pickedPhoto } from "../../src/lib/photo";

let settle: ((problem: Refusal | undefined) => void) | undefined;
const submitted: Record<string, string>[] = [];

const components = {
  /** A Section whose save waits until the test calls release(problem); what it was given is kept in submitted(). */
  mountSection(): void {
    createRoot(document.getElementById("root")!).render(
      <Section
        title="Payout"
        id="payout"
        button="Save payout settings"
        onSubmit={(f) => {
          submitted.push(Object.fromEntries([...f.entries()].map(([k, v]) => [k, String(v)])));
          return new Promise((resolve) => (settle = resolve));
        }}
      >
        <label className="field" htmlFor="payoutPhone">Payout M-Pesa number</label>
        <input id="payoutPhone" name="payoutPhone" type="tel" />
      </Section>,
    );
  },
  release(problem: string | undefined): void {
    settle?.(problem === undefined ? undefined : { text: problem });
  },
  submitted: () => submitted,
  pickedPhoto,
  /** What the picker says of a file of these bytes and declared type: "ok" or the message key. */
  async problemWith(parts: BlobPart[], type: string): Promise<string> {
    const r = await pickedPhoto(new File(parts, "photo", { type }));
    return r.ok ? "ok" : r.problem;
  },
  /** A JPEG's first bytes, size, dimensions and the colour of a corner and of the centre, as the browser decodes it. */
  async describeJpeg(bytes: Uint8Array) {
    const bitmap = await createImageBitmap(new Blob([bytes as BlobPart], { type: "image/jpeg" }));
    const c = document.createElement("canvas");
    c.width = bitmap.width;
    c.height = bitmap.height;
    const x = c.getContext("2d")!;
    x.drawImage(bitmap, 0, 0);
    const px = (a: number, b: number) => Array.from(x.getImageData(a, b, 1, 1).data.slice(0, 3));
    return { head: Array.from(bytes.slice(0, 3)), bytes: bytes.length, width: bitmap.width, height: bitmap.height, corner: px(2, 2), centre: px(bitmap.width >> 1, bitmap.height >> 1) };
  },
};

declare global {
  interface Window {
    components: typeof components;
  }
}
window.components = components;
