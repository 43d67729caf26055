// An EMVCo merchant-presented payload decoder written for the tests only,
// independently of src/emvco.ts: table-driven CRC, recursive TLV parsing.

const CRC_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n << 8;
    for (let k = 0; k < 8; k++) c = c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1;
    table[n] = c & 0xffff;
  }
  return table;
})();

export function crc16(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ b) & 0xff];
  return crc;
}

export type Tlv = Map<string, string>;

/** Splits a TLV string into id -> value (lengths count characters, as EMVCo says). */
export function parseTlv(s: string): Tlv {
  const chars = [...s];
  const out: Tlv = new Map();
  let i = 0;
  while (i < chars.length) {
    if (i + 4 > chars.length) throw new Error(`truncated data object at ${i}`);
    const id = chars.slice(i, i + 2).join("");
    const len = Number(chars.slice(i + 2, i + 4).join(""));
    if (!/^\d{2}$/.test(id) || !Number.isInteger(len)) throw new Error(`bad header at ${i}: ${chars.slice(i, i + 4).join("")}`);
    const value = chars.slice(i + 4, i + 4 + len).join("");
    if ([...value].length !== len) throw new Error(`value of ${id} is shorter than ${len}`);
    if (out.has(id)) throw new Error(`duplicate id ${id}`);
    out.set(id, value);
    i += 4 + len;
  }
  return out;
}

export interface Decoded {
  tags: Tlv;
  crcOk: boolean;
  order: string[];
}

/** Parses a whole payload and checks its CRC (tag 63, last, over everything up to and including "6304"). */
export function decodeEmvco(payload: string): Decoded {
  const tags = parseTlv(payload);
  const order = [...tags.keys()];
  const crcAt = payload.lastIndexOf("6304");
  const given = tags.get("63");
  const crcOk =
    given !== undefined &&
    crcAt === payload.length - 8 &&
    crc16(new TextEncoder().encode(payload.slice(0, crcAt + 4))).toString(16).toUpperCase().padStart(4, "0") === given;
  return { tags, crcOk, order };
}
