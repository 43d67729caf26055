"use client";
import { useMutation } from "@connectrpc/connect-query";
import Link from "next/link";
import { useParams } from "next/navigation";
import { useState } from "react";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { loadSession } from "../../../lib/session";
import { useT } from "../../w/use-t";

/** Accepting a venue's invitation: sign in with the invited phone first, then join. */
export default function Join() {
  const { token } = useParams<{ token: string }>();
  const { t, err } = useT();
  const [session] = useState(() => loadSession());
  const accept = useMutation(VenueService.method.acceptInvitation);
  const [error, setError] = useState("");
  const [venue, setVenue] = useState("");
  if (!session) {
    return (
      <>
        <h1>{t("signIn")}</h1>
        <p><Link href={`/w/signin?next=${encodeURIComponent(`/join/${token}`)}`} className="button">{t("signIn")}</Link></p>
      </>
    );
  }
  return (
    <>
      <h1>TTIP</h1>
      {venue ? (
        <p role="status">{t("joined", { venue })} <Link href="/w/shares">{t("navShares")}</Link></p>
      ) : (
        <button
          type="button"
          onClick={async () => {
            setError("");
            try {
              const { member } = await accept.mutateAsync({ token });
              setVenue(member?.venueName ?? "");
            } catch (x) {
              setError(err(x));
            }
          }}
        >
          {t("acceptInvite", { venue: "" }).trim()}
        </button>
      )}
      {error ? <p className="error" role="alert">{error}</p> : null}
    </>
  );
}
