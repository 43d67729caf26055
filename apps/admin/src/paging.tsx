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

export function usePages<T>() {
  const [rows, setRows] = useState<T[]>([]);
  const [next, setNext] = useState("");
  const [loadingMore, setLoadingMore] = useState(false);
  // Which search the rows on screen belong to: bumped by each new search, so older answers are dropped.
  const search = useRef(0);
  // A ref, not the state: two clicks in one frame both read the state from before the first.
  const moreOnItsWay = useRef(false);

  /**
   * A new search: its first page replaces the rows. Resolves true when its rows are shown (false when a
   * newer search replaced it first); rejects with the call's error, the rows left as they were.
   */
  const first = async (fetchPage: (pageToken: string) => Promise<Page<T>>): Promise<boolean> => {
    const mine = ++search.current;
    moreOnItsWay.current = false;
    setLoadingMore(false);
    const page = await fetchPage("");
    if (mine !== search.current) return false;
    setRows(page.rows);
    setNext(page.next);
    return true;
  };

  /** The next page of the search on screen, once however often it is asked for while it comes. */
  const more = async (fetchPage: (pageToken: string) => Promise<Page<T>>): Promise<void> => {
    if (moreOnItsWay.current || !next) return;
    const mine = search.current;
    moreOnItsWay.current = true;
    setLoadingMore(true);
    try {
      const page = await fetchPage(next);
      if (mine !== search.current) return;
      setRows((shown) => [...shown, ...page.rows]);
      setNext(page.next);
    } finally {
      if (mine === search.current) {
        moreOnItsWay.current = false;
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
