"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useParams, useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import type { Manager, ManagerInvitation } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { VenueNav } from "../../nav";
import { LinkState } from "../../link-state";
import { shown } from "../../util";
import { useInvitationForm } from "../../use-invitation-form";
import { useSaidWrite } from "../../use-said-write";
import { useVT } from "../../use-vt";

/** The invitation's input each refused field of InviteManager is typed in. */
const INVITE_INPUTS: Readonly<Record<string, string>> = { phone: "phone", display_name: "name" };

/** The venue's managers: who they are, inviting another by phone, pending invitations, removing one or stepping down. */
export default function Managers() {
  const { venueId } = useParams<{ venueId: string }>();
  const router = useRouter();
  const { t, err: plainError, locale } = useVT();
  const list = useQuery(VenueService.method.listManagers, { venueId });
  const invite = useMutation(VenueService.method.inviteManager);
  const cancel = useMutation(VenueService.method.cancelManagerInvitation);
  const resend = useMutation(VenueService.method.resendManagerInvitation);
  const remove = useMutation(VenueService.method.removeManager);
  const [removing, setRemoving] = useState<Manager>();
  const write = useSaidWrite(() => list.refetch());
  const { run, error, note } = write;
  const inviting = useInvitationForm(write, INVITE_INPUTS);
  const nameOf = (m: Manager) => m.displayName || m.phoneMasked || t("v_aSomeManager");

  const onInvite = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    const who = inviting.invitee(form, new FormData(form));
    if (!who) return;
    inviting.send(form, who.name, [who.phone, who.name], async (key) => {
      const { invitation, invitationSent } = await invite.mutateAsync({ venueId, phone: who.phone, displayName: who.name, idempotencyKey: key });
      const ended = invitation?.acceptedAt ? "v_managerInviteEndedAccepted" : invitation?.cancelledAt ? "v_inviteEndedWithdrawn" : undefined;
      return { invitationSent, ended };
    });
  };
  // Removal takes the venue from them at once: asked once more. Stepping down takes it from the caller, who then
  // has nothing here to see.
  const onRemove = () => {
    const who = removing;
    if (!who) return;
    void run(async () => {
      await remove.mutateAsync({ venueId, userId: who.userId });
      setRemoving(undefined);
      if (who.isYou) return router.replace("/v");
      return t("v_managerRemoved", { name: nameOf(who) });
    });
  };

  // A new link by SMS; the old one stops working.
  const onResend = (i: ManagerInvitation) => inviting.sendAgain(i.displayName, i.invitationId, (key) => resend.mutateAsync({ venueId, invitationId: i.invitationId, idempotencyKey: key }));

  const managers = list.data?.managers ?? [];
  const invitations = list.data?.invitations ?? [];
  return (
    <>
      <VenueNav venueId={venueId} />
      <h1>{t("v_managers")}</h1>
      <p className="muted">{t("v_managersWhy")}</p>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {note ? <p role="status">{note}</p> : null}
      {list.error ? <p className="error" role="alert">{plainError(list.error)}</p> : null}
      <div className="table-box"><table data-testid="managers">
        <thead><tr><th>{t("v_name")}</th><th>{t("v_phone")}</th><th></th></tr></thead>
        <tbody>
          {managers.map((m) => (
            <tr key={m.userId}>
              <td>{m.displayName || t("v_noName")}{m.isYou ? ` ${t("v_youMark")}` : ""}</td>
              <td>{m.phoneMasked}</td>
              <td>
                {managers.length > 1 ? (
                  <button type="button" className="secondary" disabled={write.busy} aria-expanded={removing?.userId === m.userId} onClick={() => setRemoving(m)}
                    aria-label={m.isYou ? undefined : t("v_removeManager", { name: nameOf(m) })}>
                    {m.isYou ? t("v_stepDown") : t("v_remove")}
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table></div>
      {managers.length === 1 ? <p className="muted" data-testid="last-manager">{t("v_lastManager")}</p> : null}
      {removing ? (
        <div data-testid="removing" role="group" aria-label={removing.isYou ? t("v_stepDown") : t("v_removeManager", { name: nameOf(removing) })}>
          <p>{removing.isYou ? t("v_stepDownQ") : t("v_removeManagerQ", { name: nameOf(removing) })}</p>
          <button type="button" disabled={write.busy} onClick={onRemove}>{removing.isYou ? t("v_stepDownConfirm") : t("v_removeManagerConfirm", { name: nameOf(removing) })}</button>
          <button type="button" className="secondary" onClick={() => setRemoving(undefined)}>{t("v_keepManager")}</button>
        </div>
      ) : null}

      {invitations.length ? (
        <>
          <h2>{t("v_pendingInvitations")}</h2>
          <div className="table-box"><table data-testid="manager-invitations">
            <thead><tr><th>{t("v_name")}</th><th>{t("v_phone")}</th><th>{t("v_invitedOn")}</th><th></th></tr></thead>
            <tbody>
              {invitations.map((i) => (
                <tr key={i.invitationId}>
                  <td>{i.displayName}</td>
                  <td>{i.phoneMasked}</td>
                  <td>{shown(i.invitedAt, locale)}<br /><LinkState expiresAt={i.expiresAt} /></td>
                  <td>
                    <button type="button" className="secondary" disabled={write.busy} onClick={() => onResend(i)}>{t("v_sendAgain", { name: i.displayName })}</button>
                    <button type="button" className="secondary" disabled={write.busy} onClick={() => run(async () => {
                      await cancel.mutateAsync({ venueId, invitationId: i.invitationId });
                      return t("v_invitationCancelled", { name: i.displayName });
                    })}>{t("v_cancelInvitation", { name: i.displayName })}</button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table></div>
        </>
      ) : null}

      <form onSubmit={onInvite} noValidate>
        <h2>{t("v_inviteManagerH")}</h2>
        <p className="muted">{t("v_inviteManagerWhy")}</p>
        <label className="field" htmlFor="phone">{t("v_phoneNumber")}</label>
        <input id="phone" name="phone" type="tel" inputMode="tel" />
        <label className="field" htmlFor="name">{t("v_name")}</label>
        <input id="name" name="name" type="text" maxLength={80} />
        <button type="submit" disabled={write.busy}>{t("v_sendInvite")}</button>
      </form>
    </>
  );
}
