// What a form asks, for use-write.ts's key: apart from write-key.ts, which the phone's app shares (it has no FormData).

/** What a form asks: its text fields, in order (a file by its name and size). */
export function formIntent(form: FormData): string {
  return JSON.stringify(Array.from(form.entries(), ([k, v]) => [k, typeof v === "string" ? v : `${v.name}:${v.size}`]));
}
