"use client";
import { Code, ConnectError } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import Link from "next/link";
import { useParams } from "next/navigation";
import { useState } from "react";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { loadSession } from "../../../lib/session";
import { useWrite } from "../../../lib/use-write";
import { linkExpiredSentence } from "../link-expired";
import { useT } from "../../w/use-t";

/** Accepting a venue's invitation: sign in with the invited phone first, then join. The venue is named from the link (its public lookup). */
export default function Join() {
  const { token } = useParams<{ token: string }>();
  const { t, err, locale } = useT();
  const [session] = useState(() => loadSession());
  const accept = useMutation(VenueService.method.acceptInvitation);
  const invitation = useQuery(VenueService.method.getInvitation, { token }, { retry: false });
  const venueName = invitation.data?.venueName ?? "";
  const gone = invitation.error instanceof ConnectError && invitation.error.code === Code.NotFound;
  const expired = linkExpiredSentence(t, locale, venueName, invitation.data);
  const [error, setError] = useState("");
  const [venue, setVenue] = useState("");
  // Accepted under another invitation already (their other number): a worker's sentence, not a token to check.
  const [already, setAlready] = useState(false);
  const write = useWrite();
  if (!session) {
    return (
      <>
        <h1>{venueName ? t("joinTitleVenue", { venue: venueName }) : t("joinTitle")}</h1>
        {gone ? <p className="notice bad" role="alert">{t("joinGone")}</p> : expired ? <p className="notice bad" role="alert">{expired}</p> : <p>{venueName ? t("joinWhyVenue", { venue: venueName }) : t("joinWhy")}</p>}
        <p><Link href={`/w/signin?next=${encodeURIComponent(`/join/${token}`)}`} className="button">{t("signIn")}</Link></p>
      </>
    );
  }
  return (
    <>
      <h1>{venueName ? t("joinTitleVenue", { venue: venueName }) : t("joinTitle")}</h1>
      {gone ? <p className="notice bad" role="alert">{t("joinGone")}</p> : null}
      {expired && !venue ? <p className="notice bad" role="alert">{expired}</p> : null}
      {venue ? (
        <p role="status">{t("joined", { venue })} <Link href="/w/shares">{t("navShares")}</Link></p>
      ) : already ? (
        <p role="status">{venueName ? t("joinAlready", { venue: venueName }) : t("joinAlreadyAny")} <Link href="/w">{t("joinAlreadyHome")}</Link></p>
      ) : gone || expired ? null : (
        <button
          type="button"
          disabled={write.busy}
          onClick={() => write.run(async () => {
            setError("");
            const { member } = await accept.mutateAsync({ token });
            setVenue(member?.venueName ?? "");
          }, (x) => (ConnectError.from(x).code === Code.AlreadyExists ? setAlready(true) : setError(err(x))))}
        >
          {t("acceptInvite", { venue: venueName }).trim()}
        </button>
      )}
      {error ? <p className="error" role="alert">{error}</p> : null}
    </>
  );
}
