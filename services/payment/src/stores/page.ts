// What the stores' keyset pages share: a cursor in, rows with their position out.

/** A page's cursor: the last row's time (as keysetTime wrote it) and id. */
export type Cursor = { at: string; id: string } | undefined;

/** A row of a page with its keyset position. */
export type PageRow<R> = R & { page_at: string };
