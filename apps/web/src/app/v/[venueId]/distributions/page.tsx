"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useParams } from "next/navigation";
import { useState, type FormEvent } from "react";
import { DistributionStatus, type Distribution, type Period } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { formatMoney } from "../../../../lib/money";
import { VenueNav } from "../../nav";
import { hours, inputTime, localTime, methodName, plainError, shown } from "../../util";

const STATUS: Record<DistributionStatus, string> = {
  [DistributionStatus.UNSPECIFIED]: "",
  [DistributionStatus.PREVIEW]: "preview (nothing saved)",
  [DistributionStatus.POSTING]: "being posted",
  [DistributionStatus.CONFIRMED]: "confirmed",
  [DistributionStatus.REVERSED]: "reversed",
};

/** Who gets what, each line with its weight, hours and explanation, and the rounding rule. */
function Shares({ d }: { d: Distribution }) {
  return (
    <>
      <p>
        {shown(d.period?.start)} – {shown(d.period?.end)} · rule version {d.ruleVersion} ({methodName(d.method)}) · {String(d.tipCount)} tips ·
        collected <strong data-testid="collected">{formatMoney(d.collected?.amountMinor ?? 0n)}</strong> · status <strong data-testid="distribution-status">{STATUS[d.status]}</strong>
      </p>
      {d.summary ? <p>{d.summary}</p> : null}
      <table data-testid="share-lines">
        <thead><tr><th>Member</th><th>Hours</th><th>Weight</th><th>Share</th><th>How</th></tr></thead>
        <tbody>
          {d.shares.map((s) => (
            <tr key={s.memberId}>
              <td>{s.displayName}</td>
              <td>{hours(s.minutes)}</td>
              <td>{String(s.weight)} of {String(s.totalWeight)}</td>
              <td data-minor={String(s.amount?.amountMinor ?? 0n)}>{formatMoney(s.amount?.amountMinor ?? 0n)}{s.remainderMinor ? " (+ rounding)" : ""}</td>
              <td>{s.explanation}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="muted">Rounding: {d.remainderRule}</p>
      {d.reversalReason ? <p>Reversed {shown(d.reversedAt)}: “{d.reversalReason}”</p> : null}
    </>
  );
}

/** A period's preview, confirmed once by the manager; earlier distributions, each reversible with a reason. */
export default function Distributions() {
  const { venueId } = useParams<{ venueId: string }>();
  const [preview, setPreview] = useState<Distribution>();
  const [period, setPeriod] = useState<Period>();
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const [start, setStart] = useState(() => inputTime(new Date(new Date().setHours(0, 0, 0, 0) - 86_400_000)));
  const [end, setEnd] = useState(() => inputTime(new Date(new Date().setHours(0, 0, 0, 0))));
  const list = useQuery(VenueService.method.listDistributions, { venueId, page: { pageSize: 20 } });
  const previewM = useMutation(VenueService.method.previewDistribution);
  const confirm = useMutation(VenueService.method.confirmDistribution);
  const reverse = useMutation(VenueService.method.reverseDistribution);
  const run = async (f: () => Promise<void>) => {
    setError("");
    setNote("");
    try {
      await f();
    } catch (x) {
      setError(plainError(x));
    }
  };

  const onPreview = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const s = localTime(start);
    const t = localTime(end);
    if (!s || !t) return setError("Give the period's start and end as a date and time.");
    if (s.seconds >= t.seconds) return setError("The period must end after it starts.");
    const p = { start: s, end: t } as Period;
    void run(async () => {
      const { distribution } = await previewM.mutateAsync({ venueId, period: p });
      setPreview(distribution);
      setPeriod(p);
    });
  };

  return (
    <>
      <VenueNav venueId={venueId} />
      <h1>Distributions</h1>
      <form onSubmit={onPreview} noValidate>
        <label className="field" htmlFor="start">Period from</label>
        <input id="start" type="datetime-local" step={1} value={start} onChange={(e) => setStart(e.target.value)} />
        <label className="field" htmlFor="end">Period until (must be over)</label>
        <input id="end" type="datetime-local" step={1} value={end} onChange={(e) => setEnd(e.target.value)} />
        <button type="submit" className="secondary" disabled={previewM.isPending}>Preview the split</button>
      </form>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {note ? <p role="status">{note}</p> : null}
      {preview ? (
        <section className="notice" aria-label="Preview" data-testid="preview">
          <Shares d={preview} />
          {preview.status === DistributionStatus.PREVIEW ? (
            <button
              type="button"
              disabled={confirm.isPending}
              onClick={() =>
                run(async () => {
                  const res = await confirm.mutateAsync({ venueId, period, expectedCollected: preview.collected });
                  setPreview(res.distribution);
                  setNote(res.created ? "Confirmed: the shares are posted and each member is told." : "This period was already confirmed; nothing was posted again.");
                  await list.refetch();
                })
              }
            >
              Confirm and pay {formatMoney(preview.collected?.amountMinor ?? 0n)}
            </button>
          ) : null}
        </section>
      ) : null}

      <h2>Earlier distributions</h2>
      {list.error ? <p className="error" role="alert">{plainError(list.error)}</p> : null}
      <ul data-testid="distributions">
        {(list.data?.distributions ?? []).map((d) => (
          <li key={d.distributionId} className="notice">
            <Shares d={d} />
            {d.status === DistributionStatus.CONFIRMED ? (
              <form
                noValidate
                onSubmit={(e) => {
                  e.preventDefault();
                  const reason = String(new FormData(e.currentTarget).get("reason") ?? "").trim();
                  if (reason.length < 3) return setError("Say why it is reversed (at least 3 characters): the staff and the audit trail see it.");
                  void run(async () => {
                    await reverse.mutateAsync({ venueId, distributionId: d.distributionId, reason });
                    setNote("Reversed: the shares are taken back by a reversing entry; the period may be split again.");
                    await list.refetch();
                  });
                }}
              >
                <label className="field" htmlFor={`reason-${d.distributionId}`}>Reason to reverse</label>
                <input id={`reason-${d.distributionId}`} name="reason" type="text" maxLength={500} />
                <button type="submit" className="secondary">Reverse this distribution</button>
              </form>
            ) : null}
          </li>
        ))}
      </ul>
    </>
  );
}
