"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import Link from "next/link";
import { useRef, useState, type FormEvent } from "react";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { focusInput, focusProblem, refusedField } from "../../lib/focus";
import { useWrite, type Send } from "../../lib/use-write";
import { VenueNav } from "./nav";
import { useVT } from "./use-vt";

/** The form's inputs by the field qr's refusal names. */
const INPUTS = { display_name: "name", city: "city" };

/** The venues the manager runs, and a new one (qr keeps venues; whoever creates one manages it). */
export default function Venues() {
  const { t, err: plainError } = useVT();
  const venues = useQuery(QrService.method.listManagedVenues, {});
  const put = useMutation(QrService.method.putProfile);
  const [error, setError] = useState("");
  // The new venue's id is the write's key: a retry after a lost answer saves the same venue again, never a second one.
  // Run without the form as its intent: a name edited after a lost answer corrects that venue (the put is an upsert).
  const write = useWrite();
  const formRef = useRef<HTMLFormElement>(null);
  const create = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    void write.run((send) => save(f, send), (x) => {
      setError(plainError(x));
      focusProblem(formRef.current, INPUTS, refusedField(x));
    });
  };
  const save = async (f: FormData, send: Send) => {
    setError("");
    const name = String(f.get("name") ?? "").trim();
    if (!name || name.length > 80) {
      setError(t("v_errVenueName"));
      return focusInput(formRef.current, "name");
    }
    await send((venueId) => put.mutateAsync({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: name, city: String(f.get("city") ?? "").trim().slice(0, 40) }));
    await venues.refetch();
  };
  return (
    <>
      <VenueNav />
      <h1>{t("v_yourVenues")}</h1>
      {venues.error ? <p className="error" role="alert">{plainError(venues.error)}</p> : null}
      <ul data-testid="venues">
        {(venues.data?.venues ?? []).map((v) => (
          <li key={v.ownerId}><Link href={`/v/${v.ownerId}`}>{v.displayName}</Link>{v.city ? ` · ${v.city}` : ""}</li>
        ))}
        {venues.isFetched && (venues.data?.venues.length ?? 0) === 0 ? <li>{t("v_noVenue")}</li> : null}
      </ul>
      <form ref={formRef} onSubmit={create} noValidate>
        <h2>{t("v_addVenueH")}</h2>
        <label className="field" htmlFor="name">{t("v_venueName")}</label>
        <input id="name" name="name" type="text" maxLength={80} />
        <label className="field" htmlFor="city">{t("v_city")}</label>
        <input id="city" name="city" type="text" maxLength={40} defaultValue="Nairobi" />
        {error ? <p className="error" role="alert">{error}</p> : null}
        <button type="submit" disabled={write.busy}>{t("v_addVenue")}</button>
      </form>
    </>
  );
}
