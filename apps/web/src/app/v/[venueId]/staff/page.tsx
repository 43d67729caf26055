"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useParams } from "next/navigation";
import { useState, type FormEvent } from "react";
import { MemberStatus, type Member, type Role } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { VenueNav } from "../../nav";
import { focusField, localTime, shown } from "../../util";
import { LinkState } from "../../link-state";
import { type InvitationEnd, useInvitationForm } from "../../use-invitation-form";
import { useSaidWrite } from "../../use-said-write";
import { useVT } from "../../use-vt";
import { venueRoleName, type VenueKey } from "../../../../lib/venue-i18n";

/** How far ahead an invitation may start (venue's MAX_START_AHEAD_DAYS): a later date is a typo'd year, refused before it is sent. */
const MAX_START_AHEAD_MS = 90 * 86_400_000;

/** The invitation's input each refused field of InviteMember is typed in. */
const INVITE_INPUTS: Readonly<Record<string, string>> = { phone: "phone", display_name: "name", joined_at: "joinedAt", role_id: "role" };

const STATUS: Record<MemberStatus, VenueKey | ""> = {
  [MemberStatus.UNSPECIFIED]: "",
  [MemberStatus.INVITED]: "v_stInvited",
  [MemberStatus.ACTIVE]: "v_stActive",
  [MemberStatus.LEFT]: "v_stLeft",
  [MemberStatus.CANCELLED]: "v_stCancelled",
};

/** Ended: nothing to change on the row (its role is shown as it was). */
/** An invitation's state, answered to its key asked again, when it is no longer open. */
const INVITATION_ENDS: Partial<Record<MemberStatus, InvitationEnd>> = {
  [MemberStatus.CANCELLED]: "v_inviteEndedWithdrawn",
  [MemberStatus.ACTIVE]: "v_inviteEndedAccepted",
  [MemberStatus.LEFT]: "v_inviteEndedLeft",
};
const ended = (m: Member) => m.status === MemberStatus.LEFT || m.status === MemberStatus.CANCELLED;

/**
 * The role an invitation offers before the manager picks one: front of house, else the first role that is not a
 * manager's. Never the list's first as such: the venue lists its managers' roles first.
 */
function offeredRole(roles: readonly Role[]): string {
  return (roles.find((r) => r.roleId === "front_of_house" && !r.isManager) ?? roles.find((r) => !r.isManager))?.roleId ?? "";
}

/** Staff: the list (joined and left dates), invite by phone, each member's role, leaving; the venue's roles and their points. */
export default function Staff() {
  const { venueId } = useParams<{ venueId: string }>();
  const { t, err: plainError, locale } = useVT();
  const members = useQuery(VenueService.method.listMembers, { venueId, includeLeft: true });
  const roles = useQuery(VenueService.method.listRoles, { venueId });
  const invite = useMutation(VenueService.method.inviteMember);
  const update = useMutation(VenueService.method.updateMember);
  const remove = useMutation(VenueService.method.removeMember);
  const resend = useMutation(VenueService.method.resendInvitation);
  const putRole = useMutation(VenueService.method.putRole);
  const [leaving, setLeaving] = useState<Member>();
  // One change at a time; an invitation's key survives a lost answer, so a retry invites once.
  const write = useSaidWrite(() => Promise.all([members.refetch(), roles.refetch()]));
  const { run, error, setError, note, setNote } = write;
  const inviting = useInvitationForm(write, INVITE_INPUTS);
  const roleName = (id: string) => venueRoleName(roles.data?.roles.find((r) => r.roleId === id), id, locale);
  // The role chosen, kept: the select's own value is back to the current role by the time the call answers. The select
  // is disabled while a change runs: a role chosen then was dropped unsaid, the select snapping back.
  const changeRole = (m: Member, roleId: string) =>
    run(() => update.mutateAsync({ venueId, memberId: m.memberId, roleId }).then(() => t("v_nowRole", { name: m.displayName, role: roleName(roleId) })));

  const onInvite = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    const f = new FormData(form);
    // Said in words with the focus on the input to correct, as the server's refusals are.
    const who = inviting.invitee(form, f);
    if (!who) return;
    const typedJoined = String(f.get("joinedAt") ?? "");
    const joinedAt = typedJoined ? localTime(typedJoined) : undefined;
    if (typedJoined && !joinedAt) return inviting.refuse(form, "joinedAt", t("v_errJoined"));
    if (joinedAt && Number(joinedAt.seconds) * 1000 > Date.now() + MAX_START_AHEAD_MS) return inviting.refuse(form, "joinedAt", t("v_errJoinedAhead"));
    const roleId = String(f.get("role"));
    inviting.send(form, who.name, [who.phone, who.name, roleId, typedJoined], async (key) => {
      const res = await invite.mutateAsync({ venueId, phone: who.phone, displayName: who.name, roleId, joinedAt, idempotencyKey: key });
      return { invitationSent: res.invitationSent, ended: INVITATION_ENDS[res.member?.status ?? MemberStatus.INVITED] };
    });
  };
  // A new link by SMS; the old one stops working.
  const onResend = (m: Member) => inviting.sendAgain(m.displayName, m.memberId, (key) => resend.mutateAsync({ venueId, memberId: m.memberId, idempotencyKey: key }));
  // Withdrawn at once, as a manager's invitation is: nothing of theirs at the venue yet.
  const onCancel = (m: Member) => void run(async () => {
    // Only an invitation: one accepted since the list was read is refused, not its worker taken off the staff.
    await remove.mutateAsync({ venueId, memberId: m.memberId, onlyIfInvited: true });
    return t("v_invitationCancelled", { name: m.displayName });
  });
  // Leaving is for good (their codes here are switched off): asked once more, with the reason the audit trail keeps.
  const onLeave = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const who = leaving;
    if (!who) return;
    const reason = String(new FormData(e.currentTarget).get("reason") ?? "").trim();
    void run(async () => {
      await remove.mutateAsync({ venueId, memberId: who.memberId, reason });
      setLeaving(undefined);
      return t("v_hasLeft", { name: who.displayName });
    });
  };
  const onRole = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const roleId = String(f.get("roleId") ?? "").trim();
    // Digits only: Number("") is 0, and a cleared field saved the role at 0 points (its members paid nothing from the pool).
    const typed = String(f.get("points") ?? "").trim();
    const points = /^\d{1,4}$/.test(typed) ? Number(typed) : NaN;
    setNote("");
    if (!/^[a-z][a-z0-9_]{1,31}$/.test(roleId)) return (setError(t("v_errRoleId")), focusField("roleId"));
    if (!Number.isInteger(points) || points < 0 || points > 1000) return (setError(t("v_errPoints")), focusField("points"));
    void run(async () => {
      await putRole.mutateAsync({ venueId, roleId, name: String(f.get("roleName") ?? "").trim() || roleId, points, isManager: f.get("isManager") === "on" });
      return t("v_roleSaved");
    });
  };

  const list = members.data?.members ?? [];
  return (
    <>
      <VenueNav venueId={venueId} />
      <h1>{t("v_staff")}</h1>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {note ? <p role="status">{note}</p> : null}
      {members.error ? <p className="error" role="alert">{plainError(members.error)}</p> : null}
      <div className="table-box"><table data-testid="staff">
        <thead><tr><th>{t("v_name")}</th><th>{t("v_phone")}</th><th>{t("v_role")}</th><th>{t("v_status")}</th><th>{t("v_joined")}</th><th>{t("v_left")}</th><th></th></tr></thead>
        <tbody>
          {list.map((m: Member) => (
            <tr key={m.memberId}>
              <td>{m.displayName}</td>
              <td>{m.phoneMasked}{m.acceptedPhoneMasked ? <><br /><small className="muted">{t("v_acceptedFrom", { phone: m.acceptedPhoneMasked })}</small></> : null}</td>
              <td>
                {ended(m) ? roleName(m.roleId) : (
                  <select aria-label={t("v_roleOf", { name: m.displayName })} value={m.roleId} disabled={write.busy} onChange={(e) => changeRole(m, e.target.value)}>
                    {(roles.data?.roles ?? []).map((r) => <option key={r.roleId} value={r.roleId}>{roleName(r.roleId)}</option>)}
                  </select>
                )}
              </td>
              <td>
                {STATUS[m.status] ? t(STATUS[m.status] as VenueKey) : ""}
                {m.status === MemberStatus.INVITED ? <><br /><LinkState expiresAt={m.invitationExpiresAt} /></> : null}
              </td>
              <td>{shown(m.joinedAt, locale)}</td>
              <td>{shown(m.leftAt, locale)}</td>
              <td>
                {m.status === MemberStatus.INVITED ? (
                  <>
                    <button type="button" className="secondary" disabled={write.busy} onClick={() => onResend(m)}>{t("v_sendAgain", { name: m.displayName })}</button>
                    <button type="button" className="secondary" disabled={write.busy} onClick={() => onCancel(m)}>{t("v_cancelInvitation", { name: m.displayName })}</button>
                  </>
                ) : null}
                {m.status === MemberStatus.ACTIVE ? (
                  <button type="button" className="secondary" disabled={write.busy} aria-expanded={leaving?.memberId === m.memberId} onClick={() => setLeaving(m)}>
                    {t("v_leftStaff")}
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table></div>
      {members.data && !list.length ? <p className="muted" data-testid="no-staff">{t("v_noStaff")}</p> : null}
      {leaving ? (
        <form onSubmit={onLeave} noValidate data-testid="leaving">
          <h2>{t("v_leavingH", { name: leaving.displayName })}</h2>
          <label className="field" htmlFor="leftReason">{t("v_leavingWhy")}</label>
          <input id="leftReason" name="reason" type="text" maxLength={500} autoFocus />
          <button type="submit" disabled={write.busy}>{t("v_leavingConfirm", { name: leaving.displayName })}</button>
          <button type="button" className="secondary" onClick={() => setLeaving(undefined)}>{t("v_leavingKeep", { name: leaving.displayName })}</button>
        </form>
      ) : null}

      <form onSubmit={onInvite} noValidate>
        <h2>{t("v_inviteH")}</h2>
        <label className="field" htmlFor="phone">{t("v_phoneNumber")}</label>
        <input id="phone" name="phone" type="tel" inputMode="tel" />
        <label className="field" htmlFor="name">{t("v_name")}</label>
        <input id="name" name="name" type="text" maxLength={80} />
        <label className="field" htmlFor="joinedAt">{t("v_joinedFrom")}</label>
        <input id="joinedAt" name="joinedAt" type="datetime-local" />
        <label className="field" htmlFor="role">{t("v_role")}</label>
        {/* Drawn again once the roles arrive: a default given before its options exist is not applied (the browser
            then selects the first option, a manager's role). */}
        <select id="role" name="role" key={roles.data ? "roles" : "loading"} defaultValue={offeredRole(roles.data?.roles ?? [])}>
          {(roles.data?.roles ?? []).map((r) => <option key={r.roleId} value={r.roleId}>{roleName(r.roleId)}</option>)}
        </select>
        <button type="submit" disabled={write.busy}>{t("v_sendInvite")}</button>
      </form>

      <h2>{t("v_roles")}</h2>
      <div className="table-box"><table data-testid="roles">
        <thead><tr><th>{t("v_role")}</th><th>{t("v_points")}</th><th>{t("v_manager")}</th></tr></thead>
        <tbody>
          {(roles.data?.roles ?? []).map((r) => (
            <tr key={r.roleId}><td>{roleName(r.roleId)} <span className="muted">({r.roleId})</span></td><td>{r.points}</td><td>{r.isManager ? t("v_managerYes") : ""}</td></tr>
          ))}
        </tbody>
      </table></div>
      <form onSubmit={onRole} noValidate>
        <h3>{t("v_roleForm")}</h3>
        <label className="field" htmlFor="roleId">{t("v_roleId")}</label>
        <input id="roleId" name="roleId" type="text" placeholder="bar" />
        <label className="field" htmlFor="roleName">{t("v_roleName")}</label>
        <input id="roleName" name="roleName" type="text" maxLength={60} />
        <label className="field" htmlFor="points">{t("v_points")}</label>
        <input id="points" name="points" type="text" inputMode="numeric" defaultValue="10" />
        <label className="check"><input type="checkbox" name="isManager" /> {t("v_managersRole")}</label>
        <button type="submit" className="secondary" disabled={write.busy}>{t("v_saveRole")}</button>
      </form>
    </>
  );
}
