// Venues, for admins acting for one whose managers are gone (left the business, lost their number): find it by
// name, see its managers and pending invitations, invite a new manager by phone, remove one, each change with the
// device step-up (it grants or takes a venue's management) and in the audit log. The venue service answers as it
// answers a manager: the SMS link, the invited number's check and the last manager kept.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useEffect, useState } from "react";
import type { Profile } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import type { ListManagersResponse } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { api, errorText, stepUp } from "./api";
import { Action, Section, when } from "./ui";

/** Only admins see this screen (the venue service acts for admins alone). */
export function Venues() {
  const [query, setQuery] = useState("");
  const [found, setFound] = useState<Profile[]>();
  const [venue, setVenue] = useState<Profile>();
  const [error, setError] = useState("");
  const search = async () => {
    setError("");
    try {
      setFound((await api(QrService).searchVenues({ query: query.trim() })).venues);
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <div>
      <Section title="Find a venue">
        <form className="inline" onSubmit={(e) => (e.preventDefault(), void search())}>
          <input data-field="query" aria-label="Venue name" placeholder="Venue name (2 letters or more)" value={query} onChange={(e) => setQuery(e.target.value)} />
          <button>Search</button>
        </form>
        {error && <p role="alert" className="error">{error}</p>}
        {found && (
          <table data-testid="venues-found">
            <thead><tr><th>Venue</th><th>City</th><th>State</th><th /></tr></thead>
            <tbody>
              {found.map((v) => (
                <tr key={v.ownerId}>
                  <td>{v.displayName}</td><td>{v.city}</td><td>{v.active ? "taking tips" : "inactive"}</td>
                  <td><button className="link" onClick={() => setVenue(v)}>Managers of {v.displayName}</button></td>
                </tr>
              ))}
              {!found.length && <tr><td colSpan={4}>No venue's name holds “{query.trim()}”.</td></tr>}
            </tbody>
          </table>
        )}
      </Section>
      {venue && <VenueManagers key={venue.ownerId} venue={venue} />}
    </div>
  );
}

function VenueManagers({ venue }: { venue: Profile }) {
  const [list, setList] = useState<ListManagersResponse>();
  const [error, setError] = useState("");
  const [phone, setPhone] = useState("");
  const [name, setName] = useState("");
  const venueId = venue.ownerId;
  const load = async () => {
    try {
      setList(await api(VenueService).listManagers({ venueId }));
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), []);
  const one = (list?.managers.length ?? 0) <= 1 ? "a venue keeps its last manager: invite another first" : undefined;
  return (
    <Section title={`Managers of ${venue.displayName}`}>
      {error && <p role="alert" className="error">{error}</p>}
      <table data-testid="venue-managers">
        <thead><tr><th>Name</th><th>Phone</th><th /></tr></thead>
        <tbody>
          {list?.managers.map((m) => (
            <tr key={m.userId}>
              <td>{m.displayName || "(no name given)"}</td><td>{m.phoneMasked}</td>
              <td><Action label="Remove" danger disabledWhy={one} confirm={`${m.displayName || m.phoneMasked} loses access to ${venue.displayName} at once.`} run={async () => {
                await api(VenueService).removeManager({ venueId, userId: m.userId }, await stepUp());
                await load();
                return "Removed.";
              }} /></td>
            </tr>
          ))}
        </tbody>
      </table>
      {!!list?.invitations.length && (
        <table data-testid="venue-manager-invitations">
          <thead><tr><th>Invited</th><th>Phone</th><th>On</th><th>Link</th><th /></tr></thead>
          <tbody>
            {list.invitations.map((i) => (
              <tr key={i.invitationId}>
                <td>{i.displayName}</td><td>{i.phoneMasked}</td><td>{when(i.invitedAt)}</td>
                <td>{i.expiresAt ? `${timestampDate(i.expiresAt).getTime() <= Date.now() ? "stopped working" : "works until"} ${when(i.expiresAt)}` : ""}</td>
                <td><Action label="Send again" run={async (_, send) => {
                  const proof = await stepUp();
                  const r = await send((key) => api(VenueService).resendManagerInvitation({ venueId, invitationId: i.invitationId, idempotencyKey: key }, proof));
                  await load();
                  return r.invitationSent ? "A new link went by SMS; the one before no longer works." : "A new link is ready, but the SMS could not be sent now: send it again.";
                }} />
                <Action label="Cancel invitation" run={async () => {
                  await api(VenueService).cancelManagerInvitation({ venueId, invitationId: i.invitationId }, await stepUp());
                  await load();
                  return "Cancelled: its link no longer works.";
                }} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form className="inline" onSubmit={(e) => e.preventDefault()}>
        <input data-field="phone" aria-label="New manager's phone" placeholder="Phone (07…)" value={phone} onChange={(e) => setPhone(e.target.value)} />
        <input data-field="display_name" aria-label="New manager's name" placeholder="Name" value={name} onChange={(e) => setName(e.target.value)} />
        <Action label="Invite as manager" intent={JSON.stringify([phone.replace(/[\s-]/g, ""), name.trim()])} run={async (_, send) => {
          const proof = await stepUp();
          const r = await send((key) => api(VenueService).inviteManager({ venueId, phone: phone.trim(), displayName: name.trim(), idempotencyKey: key }, proof));
          await load();
          return r.invitationSent ? `Invited by SMS; they accept signed in with that number.` : "Invited, but the SMS could not be sent now: send it again from the list.";
        }} />
      </form>
    </Section>
  );
}
