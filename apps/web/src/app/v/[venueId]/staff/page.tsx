"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useParams } from "next/navigation";
import { useState, type FormEvent } from "react";
import { MemberStatus, type Member } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { normaliseKenyanPhone } from "../../../../lib/phone";
import { VenueNav } from "../../nav";
import { localTime, plainError, shown } from "../../util";

const STATUS: Record<MemberStatus, string> = {
  [MemberStatus.UNSPECIFIED]: "",
  [MemberStatus.INVITED]: "invited",
  [MemberStatus.ACTIVE]: "active",
  [MemberStatus.LEFT]: "left",
};

/** Staff: the list (joined and left dates), invite by phone, each member's role, leaving; the venue's roles and their points. */
export default function Staff() {
  const { venueId } = useParams<{ venueId: string }>();
  const members = useQuery(VenueService.method.listMembers, { venueId, includeLeft: true });
  const roles = useQuery(VenueService.method.listRoles, { venueId });
  const invite = useMutation(VenueService.method.inviteMember);
  const update = useMutation(VenueService.method.updateMember);
  const remove = useMutation(VenueService.method.removeMember);
  const putRole = useMutation(VenueService.method.putRole);
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const run = async (f: () => Promise<string | void>) => {
    setError("");
    setNote("");
    try {
      const said = await f();
      if (said) setNote(said);
      await Promise.all([members.refetch(), roles.refetch()]);
    } catch (x) {
      setError(plainError(x));
    }
  };
  const roleName = (id: string) => roles.data?.roles.find((r) => r.roleId === id)?.name ?? id;

  const onInvite = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const phone = normaliseKenyanPhone(String(f.get("phone") ?? ""));
    const name = String(f.get("name") ?? "").trim();
    if (!phone) return setError("Enter a Kenyan mobile number, for example 0712 345 678.");
    if (!name) return setError("Enter the person's name.");
    const typedJoined = String(f.get("joinedAt") ?? "");
    const joinedAt = typedJoined ? localTime(typedJoined) : undefined;
    if (typedJoined && !joinedAt) return setError("Give the date and time they start counting for splits, or leave it empty for now.");
    const form = e.currentTarget;
    void run(async () => {
      const res = await invite.mutateAsync({ venueId, phone: `0${phone.slice(3)}`, displayName: name, roleId: String(f.get("role")), joinedAt, idempotencyKey: crypto.randomUUID() });
      form.reset();
      return res.invitationSent ? `${name} was invited by SMS.` : `${name} is invited, but the SMS could not be sent now: invite again to resend.`;
    });
  };
  const onRole = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const roleId = String(f.get("roleId") ?? "").trim();
    const points = Number(String(f.get("points") ?? ""));
    if (!/^[a-z][a-z0-9_]{1,31}$/.test(roleId)) return setError("A role's id is 2 to 32 lower-case letters, digits or _, starting with a letter (e.g. front_of_house).");
    if (!Number.isInteger(points) || points < 0 || points > 1000) return setError("Points are a whole number from 0 to 1000.");
    void run(async () => {
      await putRole.mutateAsync({ venueId, roleId, name: String(f.get("roleName") ?? "").trim() || roleId, points, isManager: f.get("isManager") === "on" });
      return "Role saved.";
    });
  };

  const list = members.data?.members ?? [];
  return (
    <>
      <VenueNav venueId={venueId} />
      <h1>Staff</h1>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {note ? <p role="status">{note}</p> : null}
      {members.error ? <p className="error" role="alert">{plainError(members.error)}</p> : null}
      <table data-testid="staff">
        <thead><tr><th>Name</th><th>Phone</th><th>Role</th><th>Status</th><th>Joined</th><th>Left</th><th></th></tr></thead>
        <tbody>
          {list.map((m: Member) => (
            <tr key={m.memberId}>
              <td>{m.displayName}</td>
              <td>{m.phoneMasked}</td>
              <td>
                {m.status === MemberStatus.LEFT ? roleName(m.roleId) : (
                  <select aria-label={`Role of ${m.displayName}`} value={m.roleId} onChange={(e) => run(() => update.mutateAsync({ venueId, memberId: m.memberId, roleId: e.target.value }).then(() => `${m.displayName} is now ${roleName(e.target.value)}.`))}>
                    {(roles.data?.roles ?? []).map((r) => <option key={r.roleId} value={r.roleId}>{r.name}</option>)}
                  </select>
                )}
              </td>
              <td>{STATUS[m.status]}</td>
              <td>{shown(m.joinedAt)}</td>
              <td>{shown(m.leftAt)}</td>
              <td>
                {m.status !== MemberStatus.LEFT ? (
                  <button type="button" className="secondary" onClick={() => run(() => remove.mutateAsync({ venueId, memberId: m.memberId, reason: "left the staff" }).then(() => `${m.displayName} has left; their codes here are switched off.`))}>
                    Left the staff
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>

      <form onSubmit={onInvite} noValidate>
        <h2>Invite by phone</h2>
        <label className="field" htmlFor="phone">Phone number</label>
        <input id="phone" name="phone" type="tel" inputMode="tel" />
        <label className="field" htmlFor="name">Name</label>
        <input id="name" name="name" type="text" maxLength={80} />
        <label className="field" htmlFor="joinedAt">Counts for splits from (empty: now)</label>
        <input id="joinedAt" name="joinedAt" type="datetime-local" />
        <label className="field" htmlFor="role">Role</label>
        <select id="role" name="role" defaultValue="front_of_house">
          {(roles.data?.roles ?? []).map((r) => <option key={r.roleId} value={r.roleId}>{r.name}</option>)}
        </select>
        <button type="submit" disabled={invite.isPending}>Send invitation</button>
      </form>

      <h2>Roles</h2>
      <table data-testid="roles">
        <thead><tr><th>Role</th><th>Points</th><th>Manager</th></tr></thead>
        <tbody>
          {(roles.data?.roles ?? []).map((r) => (
            <tr key={r.roleId}><td>{r.name} <span className="muted">({r.roleId})</span></td><td>{r.points}</td><td>{r.isManager ? "yes (left out of splits by default)" : ""}</td></tr>
          ))}
        </tbody>
      </table>
      <form onSubmit={onRole} noValidate>
        <h3>Add or change a role</h3>
        <label className="field" htmlFor="roleId">Role id</label>
        <input id="roleId" name="roleId" type="text" placeholder="bar" />
        <label className="field" htmlFor="roleName">Role name</label>
        <input id="roleName" name="roleName" type="text" maxLength={60} />
        <label className="field" htmlFor="points">Points</label>
        <input id="points" name="points" type="text" inputMode="numeric" defaultValue="10" />
        <label className="check"><input type="checkbox" name="isManager" /> Managers' role</label>
        <button type="submit" className="secondary">Save role</button>
      </form>
    </>
  );
}
