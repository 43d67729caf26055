// A small PDF writer for statements: text in Helvetica, one of the PDF
// standard fonts every reader has, so nothing is embedded or fetched.
// A4 pages, lines of text at given columns; enough for a table.

export interface PdfLine {
  /** Text per column; columns start at the x positions given to the document (points). */
  cells: string[];
  bold?: boolean;
  size?: number;
}

const A4 = { w: 595, h: 842 };
const MARGIN = 48;
const MAX_PAGES = 200;

// WinAnsi covers Latin-1: English and Swahili need nothing else; anything else prints as "?".
function pdfText(s: string): string {
  return s.replace(/[^\x20-\x7e\xa0-\xff]/g, "?").replace(/[\\()]/g, (c) => `\\${c}`);
}

/** The document's bytes. `columns` are x offsets (points from the left margin). */
export function makePdf(lines: PdfLine[], columns: number[], rightAligned: boolean[] = []): Uint8Array {
  const pages: string[] = [];
  let ops: string[] = [];
  let y = A4.h - MARGIN;
  const flush = () => {
    pages.push(ops.join("\n"));
    ops = [];
    y = A4.h - MARGIN;
  };
  for (const line of lines) {
    const size = line.size ?? 9;
    if (y - size * 1.5 < MARGIN) flush();
    if (pages.length >= MAX_PAGES) break;
    y -= size * 1.5;
    line.cells.forEach((cell, i) => {
      if (!cell) return;
      const font = line.bold ? "/F2" : "/F1";
      // Right-aligned columns end at the next column's start: Helvetica's digits are all 0.556 em wide.
      const x = MARGIN + (columns[i] ?? 0) + (rightAligned[i] ? (columns[i + 1] ?? A4.w - 2 * MARGIN) - (columns[i] ?? 0) - cell.length * size * 0.556 - 6 : 0);
      ops.push(`BT ${font} ${size} Tf ${x.toFixed(1)} ${y.toFixed(1)} Td (${pdfText(cell)}) Tj ET`);
    });
  }
  if (ops.length || pages.length === 0) flush();

  // Objects: 1 catalog, 2 pages, 3 Helvetica, 4 Helvetica-Bold, then a page and its content per page.
  const objects: string[] = [];
  const kids = pages.map((_, i) => `${5 + i * 2} 0 R`).join(" ");
  objects.push("<< /Type /Catalog /Pages 2 0 R >>");
  objects.push(`<< /Type /Pages /Kids [${kids}] /Count ${pages.length} >>`);
  objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>");
  objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>");
  for (const [i, content] of pages.entries()) {
    objects.push(`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 ${A4.w} ${A4.h}] /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents ${6 + i * 2} 0 R >>`);
    objects.push(`<< /Length ${latin1Length(content)} >>\nstream\n${content}\nendstream`);
  }
  let out = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";
  const offsets: number[] = [];
  for (const [i, body] of objects.entries()) {
    offsets.push(latin1Length(out));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  }
  const xref = latin1Length(out);
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, "0")} 00000 n \n`).join("")}`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return latin1Bytes(out);
}

// The file is Latin-1: one byte per character, so lengths and offsets count characters.
function latin1Length(s: string): number {
  return s.length;
}

function latin1Bytes(s: string): Uint8Array {
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i) & 0xff;
  return bytes;
}
