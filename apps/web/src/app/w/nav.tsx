"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useEffect } from "react";
import { loadSession } from "../../lib/session";

/** The worker's tabs; sends a visitor without a session to sign in. */
export function WorkerNav() {
  const router = useRouter();
  useEffect(() => {
    if (!loadSession()) router.replace("/w/signin");
  }, [router]);
  return (
    <nav className="tabs" aria-label="Worker">
      <Link href="/w">Home</Link>
      <Link href="/w/history">History</Link>
      <Link href="/w/withdraw">Withdraw</Link>
      <Link href="/w/statements">Statements</Link>
      <Link href="/w/qr">My QR</Link>
    </nav>
  );
}
