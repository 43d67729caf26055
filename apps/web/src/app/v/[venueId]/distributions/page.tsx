"use client";
import { Code, ConnectError } from "@connectrpc/connect";
import { useInfiniteQuery, useMutation } from "@connectrpc/connect-query";
import { useParams } from "next/navigation";
import { Fragment, useState, type FormEvent } from "react";
import { DistributionNoteKind, DistributionStatus, type Distribution, type Period } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { formatAmount, formatMoney, WALLET_CURRENCY } from "../../../../lib/money";
import { useWrite } from "../../../../lib/use-write";
import { VenueNav } from "../../nav";
import { nairobiDayStart } from "../../../../lib/nairobi-time";
import { focusField, hours, inputTime, localTime, methodName, shown } from "../../util";
import { noteText, shareHow } from "../../share-words";
import { useVT } from "../../use-vt";
import type { VenueKey } from "../../../../lib/venue-i18n";

/** Distributions asked for at a time (three weeks of daily splits); "Older" asks for the next as many. */
const PAGE_SIZE = 20;

const STATUS: Record<DistributionStatus, VenueKey> = {
  [DistributionStatus.UNSPECIFIED]: "v_mUnknown",
  [DistributionStatus.PREVIEW]: "v_dPreview",
  [DistributionStatus.POSTING]: "v_dPosting",
  [DistributionStatus.CONFIRMED]: "v_dConfirmed",
  [DistributionStatus.REVERSED]: "v_dReversed",
};

/**
 * Who gets what, each line with its hours, weight and how it was reached, and the rounding rule, all
 * worded here from the service's fields (the service's English summary and explanations are left
 * for API clients). Each line's "how" is a row of its own under it: five columns overran a 360 px phone.
 */
function Shares({ d }: { d: Distribution }) {
  const { t, locale } = useVT();
  const pool = formatAmount(d.collected, WALLET_CURRENCY);
  return (
    <>
      <p>
        {shown(d.period?.start, locale)} – {shown(d.period?.end, locale)} · {t("v_ruleVersion", { v: d.ruleVersion })} ({t(methodName(d.method))}) · {d.tipCount === 1n ? t("v_tipOne") : t("v_tips", { n: String(d.tipCount) })} ·{" "}
        {t("v_collected")} <strong data-testid="collected">{pool}</strong> · {t("v_statusW")} <strong data-testid="distribution-status">{t(STATUS[d.status])}</strong>
      </p>
      <p data-testid="members-paid">{t("v_membersPaid", { n: d.memberCount })}</p>
      {d.notes.length ? (
        <ul data-testid="distribution-notes">
          {d.notes.map((n, i) => <li key={i}>{noteText(t, n)}</li>)}
        </ul>
      ) : null}
      <div className="table-box"><table data-testid="share-lines" className="shares">
        <thead><tr><th>{t("v_member")}</th><th>{t("v_hours")}</th><th>{t("v_weight")}</th><th>{t("v_share")}</th></tr></thead>
        <tbody>
          {d.shares.map((s) => (
            <Fragment key={s.memberId}>
              <tr>
                <td>{s.displayName}</td>
                <td>{hours(s.minutes, locale)}</td>
                <td>{t("v_weightOf", { w: String(s.weight), total: String(s.totalWeight) })}</td>
                <td data-minor={String(s.amount?.amountMinor ?? 0n)}>{formatAmount(s.amount, WALLET_CURRENCY)}{s.remainderMinor ? ` ${t("v_plusRounding")}` : ""}</td>
              </tr>
              <tr className="how">
                <td colSpan={4} className="muted">
                  {t("v_how")}: {shareHow(t, s, d.collected)}
                </td>
              </tr>
            </Fragment>
          ))}
        </tbody>
      </table></div>
      <p className="muted" data-testid="rounding">
        {t("v_rounding")}: {t("v_roundingRule")}
        {d.roundingRemainderMinor ? ` ${t("v_roundingLeft", { amount: formatMoney(d.roundingRemainderMinor, d.collected?.currency || WALLET_CURRENCY) })}` : ""}
      </p>
      {d.reversalReason ? <p>{t("v_reversedAt", { when: shown(d.reversedAt, locale) })}: “{d.reversalReason}”</p> : null}
    </>
  );
}

/** A confirm refused because the split or the takings came out otherwise than the preview shown. */
const splitChanged = (x: unknown) => {
  const e = ConnectError.from(x);
  return e.code === Code.FailedPrecondition && /^expected_(shares|collected):/.test(e.rawMessage);
};

/** A period's preview, confirmed once by the manager; earlier distributions, each reversible with a reason. */
export default function Distributions() {
  const { venueId } = useParams<{ venueId: string }>();
  const { t, err: plainError } = useVT();
  const [preview, setPreview] = useState<Distribution>();
  const [period, setPeriod] = useState<Period>();
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  // Yesterday in Nairobi.
  const [start, setStart] = useState(() => inputTime(new Date(nairobiDayStart(new Date()).getTime() - 86_400_000)));
  const [end, setEnd] = useState(() => inputTime(nairobiDayStart(new Date())));
  // "Older" continues from the last page's token: every distribution stays on the screen to read or reverse.
  const list = useInfiniteQuery(
    VenueService.method.listDistributions,
    { venueId, page: { pageSize: PAGE_SIZE, pageToken: "" } },
    { pageParamKey: "page.pageToken", getNextPageParam: (last) => last.page?.nextPageToken || undefined },
  );
  const distributions = (list.data?.pages ?? []).flatMap((p) => p.distributions);
  const previewM = useMutation(VenueService.method.previewDistribution);
  const confirm = useMutation(VenueService.method.confirmDistribution);
  const reverse = useMutation(VenueService.method.reverseDistribution);
  // One action at a time (a confirmation is keyed by its period, a reversal by its distribution).
  const write = useWrite();
  const run = (f: () => Promise<void>) => write.run(async () => {
    setError("");
    setNote("");
    await f();
  }, (x) => setError(plainError(x)));

  const onPreview = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const s = localTime(start);
    const u = localTime(end);
    if (!s || !u) return (setError(t("v_errPeriod")), focusField(s ? "end" : "start"));
    if (s.seconds >= u.seconds) return (setError(t("v_errPeriodOrder")), focusField("end"));
    const p = { start: s, end: u } as Period;
    void run(async () => {
      // The last preview goes first: refused or lost, its Confirm stayed beside the other period typed above it.
      setPreview(undefined);
      const { distribution } = await previewM.mutateAsync({ venueId, period: p });
      setPreview(distribution);
      setPeriod(p);
    });
  };

  return (
    <>
      <VenueNav venueId={venueId} />
      <h1>{t("v_distributions")}</h1>
      <form onSubmit={onPreview} noValidate>
        <label className="field" htmlFor="start">{t("v_periodFrom")} <span className="muted">({t("v_nairobiTime")})</span></label>
        <input id="start" type="datetime-local" step={1} value={start} onChange={(e) => setStart(e.target.value)} />
        <label className="field" htmlFor="end">{t("v_periodUntil")} <span className="muted">({t("v_nairobiTime")})</span></label>
        <input id="end" type="datetime-local" step={1} value={end} onChange={(e) => setEnd(e.target.value)} />
        <button type="submit" className="secondary" disabled={write.busy}>{t("v_previewBtn")}</button>
      </form>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {note ? <p role="status">{note}</p> : null}
      {preview ? (
        <section className="notice" aria-label={t("v_previewLabel")} data-testid="preview">
          <Shares d={preview} />
          {preview.status === DistributionStatus.PREVIEW ? (
            <button
              type="button"
              // The service refuses a pool that owes, or a shift still open: the note above says why and what to do instead.
              disabled={write.busy || preview.notes.some((n) => n.kind === DistributionNoteKind.POOL_OWES || n.kind === DistributionNoteKind.SHIFT_STILL_OPEN)}
              onClick={() =>
                run(async () => {
                  const res = await confirm.mutateAsync({ venueId, period, expectedCollected: preview.collected, expectedShares: preview.sharesDigest })
                    .catch(async (x: unknown) => {
                      if (!splitChanged(x)) throw x;
                      // Refused, nothing paid: the split as it is now, to check and confirm instead.
                      setPreview((await previewM.mutateAsync({ venueId, period })).distribution);
                      setError(t("v_splitChanged"));
                    });
                  if (!res) return;
                  setPreview(res.distribution);
                  // Not created: the period's earlier confirm, which this one may have just finished posting (its answer lost).
                  const posting = res.distribution?.status === DistributionStatus.POSTING;
                  setNote(t(res.created ? "v_confirmedNote" : posting ? "v_stillPosting" : "v_alreadyConfirmed"));
                  await list.refetch();
                })
              }
            >
              {t("v_confirmPay", { amount: formatAmount(preview.collected, WALLET_CURRENCY) })}
            </button>
          ) : null}
        </section>
      ) : null}

      <h2>{t("v_earlierD")}</h2>
      {list.error ? <p className="error" role="alert">{plainError(list.error)}</p> : null}
      {list.isSuccess && !distributions.length ? <p className="muted" data-testid="no-distributions">{t("v_noDistributions")}</p> : null}
      <ul data-testid="distributions" className="plain">
        {distributions.map((d) => (
          <li key={d.distributionId} className="notice">
            <Shares d={d} />
            {d.status === DistributionStatus.CONFIRMED ? (
              <form
                noValidate
                onSubmit={(e) => {
                  e.preventDefault();
                  const reason = String(new FormData(e.currentTarget).get("reason") ?? "").trim();
                  if (reason.length < 3) return setError(t("v_errReason"));
                  void run(async () => {
                    await reverse.mutateAsync({ venueId, distributionId: d.distributionId, reason });
                    setNote(t("v_reversedNote"));
                    await list.refetch();
                  });
                }}
              >
                <label className="field" htmlFor={`reason-${d.distributionId}`}>{t("v_reason")}</label>
                <input id={`reason-${d.distributionId}`} name="reason" type="text" maxLength={500} />
                <button type="submit" className="secondary" disabled={write.busy}>{t("v_reverseBtn")}</button>
              </form>
            ) : null}
          </li>
        ))}
      </ul>
      {/* One page on its way at a time: a second tap while it comes sends nothing. */}
      {list.hasNextPage ? (
        <button type="button" className="secondary" disabled={list.isFetching} onClick={() => void list.fetchNextPage({ cancelRefetch: false })}>{t("v_more")}</button>
      ) : null}
    </>
  );
}
