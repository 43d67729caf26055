"use client";
import { Code, ConnectError } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import Link from "next/link";
import { useParams, useRouter } from "next/navigation";
import { useState } from "react";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { forgetSignedOut } from "../../../../lib/device-key";
import { loadSession } from "../../../../lib/session";
import { useWrite } from "../../../../lib/use-write";
import { linkExpiredSentence } from "../../link-expired";
import { refreshSession } from "../../../w/providers";
import { useT } from "../../../w/use-t";

/**
 * Accepting an invitation to manage a venue: signed in with the invited number first (a new account signs up as a
 * manager), then accept. The session is refreshed at once after: its tokens carry the manager's role from then on.
 */
export default function ManageInvitation() {
  const { token } = useParams<{ token: string }>();
  const { t, err, locale } = useT();
  const [session] = useState(() => loadSession());
  const accept = useMutation(VenueService.method.acceptManagerInvitation);
  const logout = useMutation(AuthService.method.logout);
  const router = useRouter();
  const invitation = useQuery(VenueService.method.getManagerInvitation, { token }, { retry: false });
  const venueName = invitation.data?.venueName ?? "";
  const gone = invitation.error instanceof ConnectError && invitation.error.code === Code.NotFound;
  const expired = linkExpiredSentence(t, locale, venueName, invitation.data);
  const [error, setError] = useState("");
  const [done, setDone] = useState<{ venueId: string; venueName: string; refreshed: boolean }>();
  // Signed in with another number than the invitation's: this session ends, and the invited number signs in.
  const [otherNumber, setOtherNumber] = useState(false);
  const signIn = `/w/signin?as=manager&next=${encodeURIComponent(`/join/manage/${token}`)}`;
  const write = useWrite();
  const title = venueName ? t("manageTitleVenue", { venue: venueName }) : t("manageTitle");
  if (!session) {
    return (
      <>
        <h1>{title}</h1>
        {gone ? <p className="notice bad" role="alert">{t("manageGone")}</p> : expired ? <p className="notice bad" role="alert">{expired}</p> : <p>{venueName ? t("manageWhyVenue", { venue: venueName }) : t("manageWhy")}</p>}
        <p><Link href={signIn} className="button">{t("signIn")}</Link></p>
      </>
    );
  }
  const onAccept = () => write.run(async () => {
    setError("");
    const res = await accept.mutateAsync({ token });
    // The role into the tokens, as any tab rotates them (one at a time: a second use of a refresh token ends the
    // session everywhere). Not done now (the network), the accept stands all the same, and the page says to sign in again.
    const s = loadSession();
    const refreshed = s ? await refreshSession(s.accessToken) : false;
    setDone({ venueId: res.venueId, venueName: res.venueName, refreshed });
  }, (x) => {
    setError(err(x));
    setOtherNumber(ConnectError.from(x).code === Code.PermissionDenied);
  });
  return (
    <>
      <h1>{title}</h1>
      {gone && !done ? <p className="notice bad" role="alert">{t("manageGone")}</p> : null}
      {expired && !done ? <p className="notice bad" role="alert">{expired}</p> : null}
      {done ? (
        <p role="status">{t("manageDone", { venue: done.venueName })} {done.refreshed ? <Link href={`/v/${done.venueId}`}>{t("manageOpen")}</Link> : t("manageSignInAgain")}</p>
      ) : gone || expired ? null : (
        <button type="button" disabled={write.busy} onClick={onAccept}>{t("manageAccept", { venue: venueName }).trim()}</button>
      )}
      {error ? <p className="error" role="alert">{error}</p> : null}
      {otherNumber ? (
        <button type="button" className="secondary" onClick={async () => {
          await logout.mutateAsync({}).catch(() => undefined);
          // The page's user, whatever another tab signed in since.
          await forgetSignedOut(session?.userId);
          router.push(signIn);
        }}>{t("manageOtherNumber")}</button>
      ) : null}
    </>
  );
}
