"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useParams } from "next/navigation";
import { useState } from "react";
import { MemberStatus } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService, type ImportShiftsResponse } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { VenueNav } from "../../nav";
import { useWrite } from "../../../../lib/use-write";
import { fromNairobiWallTime, nairobiDayStart } from "../../../../lib/nairobi-time";
import { focusField, hours, inputTime, localTime, refusedInput, shown } from "../../util";
import { useVT } from "../../use-vt";
import { useRoleName } from "../../use-role-name";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

const MAX_CSV_BYTES = 1_048_576;

/** Shifts: hours per member over a period, a shift recorded by hand, and CSV imports with the rows refused and why. */
export default function Shifts() {
  const { venueId } = useParams<{ venueId: string }>();
  const { t, err: plainError, locale } = useVT();
  const roleName = useRoleName(venueId);
  const [range, setRange] = useState(() => {
    // The week to the end of today in Nairobi.
    const end = new Date(nairobiDayStart(new Date()).getTime() + 86_400_000);
    return { start: new Date(end.getTime() - 7 * 86_400_000), end };
  });
  const setRangeBound = (which: "start" | "end", value: string) => {
    const at = fromNairobiWallTime(value);
    if (at) setRange({ ...range, [which]: at });
  };
  const period = { start: timestampFromDate(range.start), end: timestampFromDate(range.end) };
  // A period typed backwards is said here, as the manager types it; the server is not asked.
  const backwards = range.end.getTime() <= range.start.getTime();
  const members = useQuery(VenueService.method.listMembers, { venueId, includeLeft: true });
  const hoursQ = useQuery(VenueService.method.getHours, { venueId, period }, { enabled: !backwards });
  const shifts = useQuery(VenueService.method.listShifts, { venueId, period }, { enabled: !backwards });
  const record = useMutation(VenueService.method.recordShift);
  const importShifts = useMutation(VenueService.method.importShifts);
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const [report, setReport] = useState<ImportShiftsResponse & { dryRun: boolean }>();
  // Those a shift may be recorded for: members who accepted their invitation, and those who left since. A clock-in a
  // member left open (removed over a day after it) holds back each split over it until a shift recorded replaces it:
  // offered only the members still there, the manager could not, and the pool's money stayed in it.
  const all = members.data?.members ?? [];
  const joined = [...all.filter((m) => m.status === MemberStatus.ACTIVE), ...all.filter((m) => m.status === MemberStatus.LEFT)];
  const name = (memberId: string) => members.data?.members.find((m) => m.memberId === memberId)?.displayName ?? memberId.slice(0, 8);
  const refresh = () => Promise.all([hoursQ.refetch(), shifts.refetch()]);

  const recordWrite = useWrite();
  const onRecord = recordWrite.onSubmit(async (f, send) => {
    setError("");
    setNote("");
    const startedAt = localTime(String(f.get("start") ?? ""));
    const endedAt = localTime(String(f.get("end") ?? ""));
    if (!startedAt || !endedAt) return (setError(t("v_errShift")), focusField(startedAt ? "end" : "start"));
    if (startedAt.seconds >= endedAt.seconds) return (setError(t("v_errOrder")), focusField("end"));
    if (!f.get("member")) return setError(t("v_noMemberToRecord"));
    await send((key) => record.mutateAsync({ venueId, memberId: String(f.get("member")), startedAt, endedAt, idempotencyKey: key }));
    setNote(t("v_shiftRecorded"));
    await refresh();
  }, (x) => (setError(plainError(x)), focusField(refusedInput(x, { member_id: "member", started_at: "start", ended_at: "end" }))));

  const importWrite = useWrite();
  const onImport = importWrite.onSubmit(async (f) => {
    setError("");
    setNote("");
    setReport(undefined);
    const file = f.get("file");
    const typed = String(f.get("csv") ?? "");
    const bytes = file instanceof File && file.size > 0 ? new Uint8Array(await file.arrayBuffer()) : new TextEncoder().encode(typed);
    if (bytes.length === 0) return setError(t("v_errCsv"));
    if (bytes.length > MAX_CSV_BYTES) return setError(t("v_errBig"));
    const dryRun = f.get("dryRun") === "on";
    const res = await importShifts.mutateAsync({ venueId, csv: bytes, dryRun });
    setReport({ ...res, dryRun });
    if (!dryRun) await refresh();
  }, (x) => setError(plainError(x)));

  return (
    <>
      <VenueNav venueId={venueId} />
      <h1>{t("v_shifts")}</h1>
      <div className="row">
        <label className="field" htmlFor="from">{t("v_from")}</label>
        <input id="from" type="datetime-local" value={inputTime(range.start)} onChange={(e) => setRangeBound("start", e.target.value)} />
        <label className="field" htmlFor="to">{t("v_until")}</label>
        <input id="to" type="datetime-local" value={inputTime(range.end)} onChange={(e) => setRangeBound("end", e.target.value)} />
      </div>
      {backwards ? <p className="error" role="alert">{t("v_errPeriodOrder")}</p> : hoursQ.error ? <p className="error" role="alert">{plainError(hoursQ.error)}</p> : null}
      <h2>{t("v_hoursPeriod")}</h2>
      <div className="table-box"><table data-testid="hours">
        <thead><tr><th>{t("v_member")}</th><th>{t("v_role")}</th><th>{t("v_shifts")}</th><th>{t("v_hours")}</th></tr></thead>
        <tbody>
          {(hoursQ.data?.hours ?? []).map((h) => (
            <tr key={h.memberId}><td>{h.displayName}</td><td>{roleName(h.roleId)}</td><td>{h.shifts}</td><td data-minutes={String(h.minutes)}>{hours(h.minutes, locale)}</td></tr>
          ))}
        </tbody>
      </table></div>
      {hoursQ.data && !hoursQ.data.hours.length ? <p className="muted">{t("v_noShifts")}</p> : null}
      <h2>{t("v_shifts")}</h2>
      <div className="table-box"><table data-testid="shifts">
        <thead><tr><th>{t("v_member")}</th><th>{t("v_start")}</th><th>{t("v_end")}</th><th>{t("v_hours")}</th></tr></thead>
        <tbody>
          {(shifts.data?.shifts ?? []).map((s) => (
            <tr key={s.shiftId}><td>{name(s.memberId)}</td><td>{shown(s.startedAt, locale)}</td><td>{s.endedAt ? shown(s.endedAt, locale) : t("v_onShift")}</td><td>{hours(s.minutes, locale)}</td></tr>
          ))}
        </tbody>
      </table></div>
      {shifts.data && !shifts.data.shifts.length ? <p className="muted">{t("v_noShifts")}</p> : null}

      {error ? <p className="error" role="alert">{error}</p> : null}
      {note ? <p role="status">{note}</p> : null}

      <form onSubmit={onRecord} noValidate>
        <h2>{t("v_recordH")}</h2>
        <label className="field" htmlFor="member">{t("v_member")}</label>
        <select id="member" name="member">
          {joined.map((m) => <option key={m.memberId} value={m.memberId}>{m.status === MemberStatus.LEFT ? t("v_memberLeft", { name: m.displayName }) : m.displayName}</option>)}
        </select>
        <label className="field" htmlFor="start">{t("v_start")}</label>
        <input id="start" name="start" type="datetime-local" />
        <label className="field" htmlFor="end">{t("v_end")}</label>
        <input id="end" name="end" type="datetime-local" />
        {/* No one to record a shift for: said, rather than sent and refused as "member id: must be a valid UUID". */}
        {members.data && !joined.length ? <p className="muted" data-testid="no-member-to-record">{t("v_noMemberToRecord")}</p> : null}
        <button type="submit" className="secondary" disabled={recordWrite.busy}>{t("v_record")}</button>
      </form>

      <form onSubmit={onImport} noValidate>
        <h2>{t("v_importH")}</h2>
        <p className="muted">{t("v_csvHelp")}</p>
        <label className="field" htmlFor="file">{t("v_csvFile")}</label>
        <input id="file" name="file" type="file" accept=".csv,text/csv" />
        <label className="field" htmlFor="csv">{t("v_paste")}</label>
        <textarea id="csv" name="csv" rows={5} />
        <label className="check"><input type="checkbox" name="dryRun" /> {t("v_dryRun")}</label>
        <button type="submit" disabled={importWrite.busy}>{t("v_import")}</button>
      </form>
      {report ? (
        <section className="notice" role="status" data-testid="import-report">
          <p>{t(`${report.dryRun ? "v_wouldImport" : "v_imported"}${report.imported === 1 ? "_one" : ""}`, { n: report.imported, refused: report.rejected.length })}</p>
          {report.rejected.length ? (
            <div className="table-box"><table aria-label={t("v_refusedRows")}>
              <thead><tr><th>{t("v_line")}</th><th>{t("v_row")}</th><th>{t("v_why")}</th></tr></thead>
              <tbody>
                {report.rejected.map((r) => <tr key={r.line}><td>{r.line}</td><td><code>{r.content}</code></td><td>{r.reason}</td></tr>)}
              </tbody>
            </table></div>
          ) : null}
        </section>
      ) : null}
    </>
  );
}
