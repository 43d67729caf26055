import { useRef } from "react";

/**
 * `run` made to go one at a time: a call while one is running does nothing. The guard is taken before any await:
 * a `busy` state comes a render too late for a double tap, which sent the write twice.
 */
export function useOneAtATime(run: () => Promise<void>): () => Promise<void> {
  const running = useRef(false);
  return async () => {
    if (running.current) return;
    running.current = true;
    try {
      await run();
    } finally {
      running.current = false;
    }
  };
}
