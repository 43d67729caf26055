// Turns the service's SVG and PDF renders back into pixels so jsQR can read
// them: enough of each format for what the qrcode package and our PDF writer draw.
import jsQR from "jsqr";
import { PNG } from "pngjs";

export interface Bitmap {
  width: number;
  height: number;
  /** true = dark */
  dark: Uint8Array;
}

function bitmap(width: number, height: number): Bitmap {
  return { width, height, dark: new Uint8Array(width * height) };
}

function fillRect(b: Bitmap, x0: number, y0: number, x1: number, y1: number) {
  for (let y = Math.max(0, Math.floor(y0)); y < Math.min(b.height, Math.ceil(y1)); y++) {
    for (let x = Math.max(0, Math.floor(x0)); x < Math.min(b.width, Math.ceil(x1)); x++) b.dark[y * b.width + x] = 1;
  }
}

export function decodeBitmap(b: Bitmap): string | undefined {
  const rgba = new Uint8ClampedArray(b.width * b.height * 4);
  for (let i = 0; i < b.dark.length; i++) {
    const v = b.dark[i] ? 0 : 255;
    rgba.set([v, v, v, 255], i * 4);
  }
  return jsQR(rgba, b.width, b.height)?.data;
}

export function decodePng(png: Uint8Array): { text: string | undefined; width: number; height: number } {
  const img = PNG.sync.read(Buffer.from(png));
  return { text: jsQR(new Uint8ClampedArray(img.data), img.width, img.height)?.data, width: img.width, height: img.height };
}

/**
 * Every QR code in an SVG: each (nested) <svg viewBox> holding qrcode's
 * stroked path ("M x y h n m dx dy ..." with stroke width 1), drawn at `scale` pixels per module.
 */
export function decodeSvgCodes(svg: string, scale = 4): string[] {
  const found: string[] = [];
  const blocks = [...svg.matchAll(/<svg[^>]*viewBox="0 0 (\d+) (\d+)"[^>]*>(.*?)<\/svg>/gs)];
  for (const [, w, h, body] of blocks) {
    const d = /<path[^>]*stroke="#000000"[^>]*d="([^"]+)"/.exec(body)?.[1] ?? /<path[^>]*d="([^"]+)"[^>]*stroke="#000000"/.exec(body)?.[1];
    if (!d) continue;
    const b = bitmap(Number(w) * scale, Number(h) * scale);
    let x = 0;
    let y = 0;
    for (const [, cmd, args] of d.matchAll(/([MmHhVv])([^MmHhVv]*)/g)) {
      const n = args.trim().split(/[\s,]+/).filter(Boolean).map(Number);
      if (cmd === "M") [x, y] = n;
      else if (cmd === "m") {
        x += n[0];
        y += n[1];
      } else if (cmd === "h") {
        // A 1-unit-wide stroke centred on y.
        fillRect(b, x * scale, (y - 0.5) * scale, (x + n[0]) * scale, (y + 0.5) * scale);
        x += n[0];
      } else throw new Error(`path command ${cmd} not expected from qrcode`);
    }
    const text = decodeBitmap(b);
    if (text !== undefined) found.push(text);
  }
  return found;
}

/** The filled rectangles ("x y w h re") of a PDF's uncompressed content stream. */
export function pdfRects(pdf: Buffer): Array<[number, number, number, number]> {
  const text = pdf.toString("latin1");
  const stream = /stream\n([\s\S]*?)\nendstream/.exec(text)?.[1] ?? "";
  return [...stream.matchAll(/([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) re/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])]);
}

/** Rasterises the rectangles of a page band (PDF y from yMin to yMax) and decodes it. */
export function decodePdfBand(pdf: Buffer, pageWidth: number, yMin: number, yMax: number, scale = 4): string | undefined {
  const b = bitmap(pageWidth * scale, (yMax - yMin) * scale);
  for (const [x, y, w, h] of pdfRects(pdf)) {
    if (y < yMin || y + h > yMax) continue;
    // PDF's y grows upward; the bitmap's downward.
    fillRect(b, x * scale, (yMax - y - h) * scale, (x + w) * scale, (yMax - y) * scale);
  }
  return decodeBitmap(b);
}
