// RFC 4180 CSV: reading a shift import, writing reports.

/** Rows of fields; quoted fields may hold commas, quotes ("") and line breaks. */
export function parseCsv(text: string, maxRows: number): { rows: { line: number; fields: string[]; raw: string }[]; truncated: boolean } {
  const rows: { line: number; fields: string[]; raw: string }[] = [];
  let field = "";
  let fields: string[] = [];
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  let raw = "";
  const endRow = () => {
    fields.push(field);
    if (fields.length > 1 || fields[0].trim() !== "") rows.push({ line: rowLine, fields, raw: raw.slice(0, 200) });
    fields = [];
    field = "";
    raw = "";
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        raw += c;
        i++;
      } else if (c === '"') quoted = false;
      else {
        if (c === "\n") line++;
        field += c;
      }
      raw += c;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === ",") fields.push(field), (field = "");
    else if (c === "\r") continue;
    else if (c === "\n") {
      endRow();
      line++;
      rowLine = line;
      if (rows.length > maxRows) return { rows: rows.slice(0, maxRows), truncated: true };
      continue;
    } else field += c;
    raw += c;
  }
  if (field !== "" || fields.length) endRow();
  return { rows: rows.slice(0, maxRows), truncated: rows.length > maxRows };
}

/** One CSV field, quoted when it must be; a leading = + - @ is defused so spreadsheets do not run it. */
export function csvField(value: string | number | bigint): string {
  let s = String(value);
  if (typeof value === "string" && /^[=+\-@]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvLine(values: (string | number | bigint)[]): string {
  return values.map(csvField).join(",") + "\r\n";
}
