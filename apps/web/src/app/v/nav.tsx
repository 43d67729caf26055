"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useEffect } from "react";
import { loadSession } from "../../lib/session";

/** The venue's tabs; sends a visitor without a session to the managers' sign-in. */
export function VenueNav({ venueId }: { venueId?: string }) {
  const router = useRouter();
  useEffect(() => {
    if (!loadSession()) router.replace("/w/signin?as=manager");
  }, [router]);
  return (
    <nav className="tabs" aria-label="Venue">
      <Link href="/v">Venues</Link>
      {venueId ? (
        <>
          <Link href={`/v/${venueId}`}>Dashboard</Link>
          <Link href={`/v/${venueId}/staff`}>Staff</Link>
          <Link href={`/v/${venueId}/shifts`}>Shifts</Link>
          <Link href={`/v/${venueId}/rules`}>Split rule</Link>
          <Link href={`/v/${venueId}/distributions`}>Distributions</Link>
          <Link href={`/v/${venueId}/reports`}>Reports</Link>
        </>
      ) : null}
    </nav>
  );
}
