import { PNG } from "pngjs";
import QRCode from "qrcode";

export type EcLevel = "L" | "M" | "Q" | "H";

export interface CardText {
  displayName: string;
  venueName?: string;
  shortCode: string;
  ussdCode: string;
  /** The KE-QR code and its paybill line; none where no paybill takes payments (QR_MPESA_SHORTCODE empty). */
  offline?: { payload: string; paybillLine: string };
}

export const DEFAULT_SIZE = 512;

/** Modules of white around a code, as the QR standard asks. */
const QUIET = 4;

/** The smallest PNG width that gives each module at least one pixel. */
export function minPngSize(text: string, ec: EcLevel): number {
  return QRCode.create(text, { errorCorrectionLevel: ec }).modules.size + 2 * QUIET;
}

/**
 * Exactly size × size pixels: whole pixels per module (sharp edges), the
 * rest of the width added evenly to the white border. qrcode's own PNG
 * writer rounds the width down instead.
 */
export function renderPng(text: string, size: number, ec: EcLevel): Buffer {
  const qr = QRCode.create(text, { errorCorrectionLevel: ec });
  const n = qr.modules.size;
  const scale = Math.floor(size / (n + 2 * QUIET));
  if (scale < 1) throw new RangeError(`at least ${n + 2 * QUIET} pixels for this code`);
  const offset = Math.floor((size - scale * n) / 2);
  const png = new PNG({ width: size, height: size, colorType: 0, inputColorType: 0, inputHasAlpha: false, bitDepth: 8 });
  const gray = Buffer.alloc(size * size, 255);
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      if (!qr.modules.get(row, col)) continue;
      for (let y = 0; y < scale; y++) gray.fill(0, (offset + row * scale + y) * size + offset + col * scale, (offset + row * scale + y) * size + offset + (col + 1) * scale);
    }
  }
  png.data = gray;
  return PNG.sync.write(png, { colorType: 0, inputColorType: 0, inputHasAlpha: false });
}

export async function renderSvg(text: string, size: number, ec: EcLevel): Promise<string> {
  const svg = await QRCode.toString(text, { type: "svg", width: size, errorCorrectionLevel: ec, margin: 4 });
  return svg.trim();
}

/** The paths and viewBox of qrcode's SVG, to nest the code inside a larger drawing. */
async function svgCode(text: string, ec: EcLevel): Promise<{ viewBox: string; body: string }> {
  const svg = await QRCode.toString(text, { type: "svg", errorCorrectionLevel: ec, margin: 4 });
  const viewBox = /viewBox="([^"]+)"/.exec(svg)?.[1];
  const body = svg.replace(/^<svg[^>]*>/, "").replace(/<\/svg>\s*$/, "");
  if (!viewBox) throw new Error("qrcode produced an SVG without a viewBox");
  return { viewBox, body };
}

function xml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/**
 * A print-ready table card: the tip-page code on top, the name and short code
 * under it, then the KE-QR code and the paybill and USSD lines for paying with
 * no internet. Width `size` user units; height 1.75 × width.
 */
export async function renderCardSvg(url: string, card: CardText, size: number, ec: EcLevel): Promise<string> {
  const w = size;
  const h = Math.round(size * 1.75);
  const main = await svgCode(url, ec);
  const offline = card.offline && (await svgCode(card.offline.payload, "M"));
  const big = Math.round(w * 0.8);
  const small = Math.round(w * 0.42);
  const fs = (k: number) => Math.max(6, Math.round(w * k));
  const lines: Array<[string, number, number, string]> = [
    [card.displayName, big + fs(0.07), fs(0.06), "bold"],
    ...(card.venueName ? ([[card.venueName, big + fs(0.13), fs(0.04), "normal"]] as Array<[string, number, number, string]>) : []),
    [`Code ${card.shortCode}`, big + fs(0.2), fs(0.055), "bold"],
  ];
  const offlineTop = big + fs(0.24);
  const text = lines
    .map(([t, y, s, weight]) => {
      // A long name is squeezed to the card's width rather than cut off.
      const fit = t.length * s * 0.6 > w * 0.92 ? ` textLength="${Math.round(w * 0.92)}" lengthAdjust="spacingAndGlyphs"` : "";
      return `<text x="${w / 2}" y="${y}" font-size="${s}" font-weight="${weight}" text-anchor="middle"${fit}>${xml(t)}</text>`;
    })
    .join("");
  // Without the KE-QR code, the USSD line takes its place.
  const footerTop = offline ? offlineTop + small : offlineTop;
  const footer = [
    ...(card.offline ? [`<text x="${w / 2}" y="${footerTop + fs(0.045)}" font-size="${fs(0.035)}" text-anchor="middle">${xml(card.offline.paybillLine)}</text>`] : []),
    `<text x="${w / 2}" y="${footerTop + fs(0.095)}" font-size="${fs(0.035)}" text-anchor="middle">${xml(`No data? Dial ${card.ussdCode}`)}</text>`,
  ].join("");
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="Helvetica, Arial, sans-serif">` +
    `<rect width="${w}" height="${h}" fill="#ffffff"/>` +
    `<svg x="${(w - big) / 2}" y="0" width="${big}" height="${big}" viewBox="${main.viewBox}" shape-rendering="crispEdges">${main.body}</svg>` +
    text +
    (offline ? `<svg x="${(w - small) / 2}" y="${offlineTop}" width="${small}" height="${small}" viewBox="${offline.viewBox}" shape-rendering="crispEdges">${offline.body}</svg>` : "") +
    footer +
    `</svg>`
  );
}

/** PDF text strings: WinAnsi subset, with ( ) \ escaped. */
function pdfText(s: string): string {
  return s
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^\x20-\x7e]/g, "?")
    .replace(/[\\()]/g, (c) => `\\${c}`);
}

/** Filled squares for every dark module of a code drawn at (x, top) with module size m (PDF y grows upward). */
function pdfModules(text: string, ec: EcLevel, x: number, top: number, width: number): string {
  const qr = QRCode.create(text, { errorCorrectionLevel: ec });
  const n = qr.modules.size;
  const quiet = 4;
  const m = width / (n + 2 * quiet);
  const ops: string[] = [];
  for (let row = 0; row < n; row++) {
    let col = 0;
    while (col < n) {
      if (!qr.modules.get(row, col)) {
        col++;
        continue;
      }
      const start = col;
      while (col < n && qr.modules.get(row, col)) col++;
      const px = x + (quiet + start) * m;
      const py = top - (quiet + row + 1) * m;
      ops.push(`${px.toFixed(3)} ${py.toFixed(3)} ${((col - start) * m).toFixed(3)} ${m.toFixed(3)} re`);
    }
  }
  return `${ops.join("\n")}\nf`;
}

/**
 * A one-page PDF table card (A6, points), drawn with PDF's own operators and
 * the standard Helvetica font, so nothing needs embedding.
 */
export function renderCardPdf(url: string, card: CardText, ec: EcLevel): Buffer {
  const W = 298;
  const H = 420;
  const big = 220;
  const small = 110;
  const center = (s: string, size: number) => (W - pdfText(s).length * size * 0.5) / 2;
  const textOp = (s: string, size: number, y: number, font = "F1") =>
    `BT /${font} ${size} Tf ${center(s, size).toFixed(1)} ${y} Td (${pdfText(s)}) Tj ET`;
  const content = [
    "0 0 0 rg",
    pdfModules(url, ec, (W - big) / 2, H - 10, big),
    textOp(card.displayName, 14, H - big - 22, "F2"),
    ...(card.venueName ? [textOp(card.venueName, 10, H - big - 36)] : []),
    textOp(`Code ${card.shortCode}`, 13, H - big - 52, "F2"),
    ...(card.offline ? [pdfModules(card.offline.payload, "M", (W - small) / 2, H - big - 60, small), textOp(card.offline.paybillLine, 9, H - big - 60 - small - 8)] : []),
    textOp(`No data? Dial ${card.ussdCode}`, 9, H - big - 60 - (card.offline ? small : 0) - 20),
  ].join("\n");
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 ${W} ${H}] /Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> /Contents 4 0 R >>`,
    `<< /Length ${Buffer.byteLength(content, "latin1")} >>\nstream\n${content}\nendstream`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
  ];
  let out = "%PDF-1.4\n";
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(Buffer.byteLength(out, "latin1"));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, "latin1");
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  out += offsets.map((o) => `${String(o).padStart(10, "0")} 00000 n \n`).join("");
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, "latin1");
}
