"use client";
import { Code, ConnectError } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useParams } from "next/navigation";
import { useState } from "react";
import { MemberStatus, SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { useWrite } from "../../../../lib/use-write";
import { VenueNav } from "../../nav";
import { ruleHow, ruleText, type MemberName } from "../../share-words";
import { basisPoints, focusField, METHODS, shown } from "../../util";
import { useVT } from "../../use-vt";

/** The split rule in force (what every member sees), its earlier versions, and a new version. */
export default function Rules() {
  const { venueId } = useParams<{ venueId: string }>();
  const { t, err: plainError, locale } = useVT();
  const current = useQuery(VenueService.method.getSplitRule, { venueId, version: 0 }, { retry: false });
  const history = useQuery(VenueService.method.listSplitRules, { venueId });
  const members = useQuery(VenueService.method.listMembers, { venueId, includeLeft: true });
  const set = useMutation(VenueService.method.setSplitRule);
  // A new version starts as the rule in force: from blank defaults, saved to change only its note, it changed the method
  // and dropped the managers, and the next split paid as nobody chose.
  const inForce = current.data?.rule;
  // Known: read, or none in force yet. Until then nothing is saved, as the form would start from blank defaults.
  const inForceKnown = current.isSuccess || (current.error !== null && ConnectError.from(current.error).code === Code.NotFound);
  const [chosen, setMethod] = useState<SplitMethod>();
  const method = chosen ?? inForce?.method ?? SplitMethod.EQUAL_ON_SHIFT;
  const percentOf = (memberId: string) => {
    const bp = inForce?.fixedShares.find((x) => x.memberId === memberId)?.basisPoints;
    return bp === undefined ? "" : String(bp / 100);
  };
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const active = (members.data?.members ?? []).filter((m) => m.status === MemberStatus.ACTIVE);
  // Every member's name, those who left too: an earlier version may give them a percentage.
  const nameOf: MemberName = (memberId) => members.data?.members.find((m) => m.memberId === memberId)?.displayName;

  const write = useWrite();
  const submit = write.onSubmit(async (f, send) => {
    setError("");
    setNote("");
    const fixedShares: { memberId: string; basisPoints: number }[] = [];
    if (method === SplitMethod.FIXED_PERCENTAGES) {
      for (const m of active) {
        const typed = String(f.get(`pct-${m.memberId}`) ?? "").trim();
        if (!typed) continue;
        const bp = basisPoints(typed);
        if (bp === undefined) return (setError(t("v_errPct", { name: m.displayName })), focusField(`pct-${m.memberId}`));
        if (bp > 0) fixedShares.push({ memberId: m.memberId, basisPoints: bp });
      }
      const total = fixedShares.reduce((s, x) => s + x.basisPoints, 0);
      if (total !== 10_000) return (setError(t("v_errPctTotal", { total: total / 100 })), focusField(active[0] && `pct-${active[0].memberId}`));
    }
    const { rule } = await send((key) => set.mutateAsync({
      venueId,
      method,
      includeManagers: f.get("includeManagers") === "on",
      fixedShares,
      note: String(f.get("note") ?? "").trim().slice(0, 500),
      idempotencyKey: key,
    }));
    setNote(t("v_inForce", { v: rule?.version ?? 0 }));
    await Promise.all([current.refetch(), history.refetch()]);
  }, (x) => setError(plainError(x)));

  // Worded only once the members' names are in: before, a named percentage would read "2 other members".
  const r = members.isPending ? undefined : current.data?.rule;
  return (
    <>
      <VenueNav venueId={venueId} />
      <h1>{t("v_rule")}</h1>
      <section className="notice" data-testid="rule-in-force">
        {r ? (
          <>
            {/* Worded here from the rule's fields, in the screen's language (the service's summary is English). */}
            <p data-testid="rule-words"><strong>{ruleText(t, r, nameOf)}</strong></p>
            <p className="muted">{t("v_sinceT", { when: shown(r.createdAt, locale) })}{r.note ? ` · “${r.note}”` : ""}</p>
          </>
        ) : current.error ? <p>{ConnectError.from(current.error).code === Code.NotFound ? t("v_noRule") : plainError(current.error)}</p> : <p>{t("v_loading")}</p>}
      </section>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {note ? <p role="status">{note}</p> : null}
      {/* Drawn again once the rule in force is read, so that its fields start from it; not for each version after (a
          version made by a save whose answer was lost would wipe what was typed for its retry). */}
      <form key={inForceKnown ? "from-rule" : "unread"} onSubmit={submit} noValidate>
        <h2>{t("v_newVersion")}</h2>
        <label className="field" htmlFor="method">{t("v_howSplit")}</label>
        {/* Named: the method is part of what the form asks, so another method after a lost answer is another write (its own key). */}
        <select id="method" name="method" value={method} onChange={(e) => setMethod(Number(e.target.value))}>
          {METHODS.map(([m, label]) => <option key={m} value={m}>{t(label)}</option>)}
        </select>
        {method === SplitMethod.FIXED_PERCENTAGES ? (
          <fieldset>
            <legend>{t("v_pctLegend")}</legend>
            {active.map((m) => (
              <div key={m.memberId}>
                <label className="field" htmlFor={`pct-${m.memberId}`}>{m.displayName}</label>
                <input id={`pct-${m.memberId}`} name={`pct-${m.memberId}`} type="text" inputMode="decimal" defaultValue={percentOf(m.memberId)} />
              </div>
            ))}
          </fieldset>
        ) : null}
        <label className="check"><input type="checkbox" name="includeManagers" defaultChecked={inForce?.includeManagers ?? false} /> {t("v_includeManagers")}</label>
        <label className="field" htmlFor="note">{t("v_why_change")}</label>
        <input id="note" name="note" type="text" maxLength={500} />
        <button type="submit" disabled={write.busy || !inForceKnown}>{t("v_putInForce")}</button>
      </form>
      <h2>{t("v_earlier")}</h2>
      <div className="table-box"><table data-testid="rule-history">
        <thead><tr><th>{t("v_version")}</th><th>{t("v_ruleCol")}</th><th>{t("v_since")}</th><th>{t("v_note")}</th></tr></thead>
        <tbody>
          {(members.isPending ? [] : history.data?.rules ?? []).map((x) => (
            <tr key={x.version}><td>{x.version}</td><td>{ruleHow(t, x, nameOf)}</td><td>{shown(x.createdAt, locale)}</td><td>{x.note}</td></tr>
          ))}
        </tbody>
      </table></div>
    </>
  );
}
