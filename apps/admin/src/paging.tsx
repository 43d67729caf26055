// A list shown page by page (the services' page tokens): a search's first page replaces the rows, More
// appends the next one. One next page is on its way at a time, and an answer for a search the screen
// has since replaced is dropped: a second click on More (before the first page lands) sent the same
// token twice and could show its rows twice, and a late answer showed another search's rows.
import { useRef, useState } from "react";

/** One page as a screen reads it from a List/Search response. */
export interface Page<T> {
  rows: T[];
  next: string;
}

export type FetchPage<T> = (pageToken: string) => Promise<Page<T>>;

/** The search whose rows are on screen: More asks its own call for its next page. */
interface OnScreen<T> {
  fetchPage?: FetchPage<T>;
  next: string;
}

export function usePages<T>() {
  const [rows, setRows] = useState<T[]>([]);
  const [next, setNext] = useState("");
  const [loadingMore, setLoadingMore] = useState(false);
  // Refs, not the state: two clicks in one frame both read the state from before the first.
  // A new object each time the rows change search or page, so a late answer can tell it was overtaken.
  const onScreen = useRef<OnScreen<T>>({ next: "" });
  // How many searches were asked for: an answer older than the latest asked is dropped.
  const asked = useRef(0);
  // The search whose next page is on its way (one at a time).
  const moreFor = useRef<OnScreen<T> | undefined>(undefined);

  /**
   * A new search: its first page replaces the rows. Resolves true when its rows are shown (false when a
   * newer search replaced it first); rejects with the call's error, the rows left as they were.
   */
  const first = async (fetchPage: FetchPage<T>): Promise<boolean> => {
    const mine = ++asked.current;
    const page = await fetchPage("");
    if (mine !== asked.current) return false;
    onScreen.current = { fetchPage, next: page.next };
    moreFor.current = undefined;
    setLoadingMore(false);
    setRows(page.rows);
    setNext(page.next);
    return true;
  };

  /**
   * The next page of the search on screen, asked with that search's own call (not the form as edited
   * since, nor a search still on its way: a page token is a position only, so either would append
   * another search's rows), once however often it is asked for while it comes.
   */
  const more = async (): Promise<void> => {
    const shown = onScreen.current;
    if (moreFor.current === shown || !shown.next || !shown.fetchPage) return;
    moreFor.current = shown;
    setLoadingMore(true);
    try {
      const page = await shown.fetchPage(shown.next);
      if (onScreen.current !== shown) return;
      onScreen.current = { fetchPage: shown.fetchPage, next: page.next };
      setRows((before) => [...before, ...page.rows]);
      setNext(page.next);
    } finally {
      if (moreFor.current === shown) {
        moreFor.current = undefined;
        setLoadingMore(false);
      }
    }
  };

  return { rows, setRows, next, loadingMore, first, more };
}

/** The More button of a paged list: shown while there is a next page, disabled while it comes. */
export function MoreButton({ pages, onClick }: { pages: { next: string; loadingMore: boolean }; onClick: () => void }) {
  if (!pages.next) return null;
  return <button type="button" disabled={pages.loadingMore} onClick={onClick}>{pages.loadingMore ? "Loading…" : "More"}</button>;
}
