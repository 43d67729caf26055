// Strangers' words (a provider's or a partner's answer) as PostgreSQL stores them. Its text and
// jsonb types cannot hold U+0000: a NUL in such words failed the write recording them, so what
// they answered was sent or applied again for ever. Each NUL is stored as U+FFFD instead.

const NUL = /\u0000/g;

/** `text` with each NUL as U+FFFD: storable as PostgreSQL text. */
export function storableText(text: string): string {
  return text.includes("\u0000") ? text.replace(NUL, "\ufffd") : text;
}

/** A NUL's escape in JSON text: a backslash not itself escaped (an even run before it), then u0000. */
const JSON_NUL = /(?<!\\)((?:\\\\)*)\\u0000/g;

/** `value` as JSON text jsonb accepts: each NUL, in a key or a value, as U+FFFD. */
export function storableJson(value: unknown): string {
  const json = JSON.stringify(value) ?? "null";
  return json.includes("\\u0000") ? json.replace(JSON_NUL, "$1\ufffd") : json;
}
