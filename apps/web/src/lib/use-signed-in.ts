"use client";
import { useRouter } from "next/navigation";
import { useEffect } from "react";
import { loadSession, onSessionUserChange } from "./session";

/**
 * Sends a tab without a session to `signInPath`: at once, and when another tab signs out (before, its screens kept the
 * worker's figures up beside "your session has ended"). Another tab signing in someone else loads this one again, for
 * them: its screens were read for the one before.
 */
export function useSignedIn(signInPath: string): void {
  const router = useRouter();
  useEffect(() => {
    if (!loadSession()) router.replace(signInPath);
    return onSessionUserChange((stored) => (stored ? window.location.reload() : router.replace(signInPath)));
  }, [router, signInPath]);
}
