"use client";
import { useState, type FormEvent, type ReactNode } from "react";
import { useSubmitOnce } from "../use-submit-once";
import { useT } from "../use-t";

/** One form of the settings screen: its own message and error, so saving one never hides another's. */
export function Section({ title, id, onSubmit, children, button }: { title: string; id: string; onSubmit: (f: FormData) => Promise<string | undefined>; children: ReactNode; button: string }) {
  const [note, setNote] = useState<{ ok: boolean; text: string }>();
  const { busy, onSubmit: submit } = useSubmitOnce(async (e: FormEvent<HTMLFormElement>) => {
    setNote(undefined);
    const problem = await onSubmit(new FormData(e.currentTarget));
    setNote(problem ? { ok: false, text: problem } : { ok: true, text: "" });
  });
  return (
    <form onSubmit={submit} noValidate aria-labelledby={id} data-testid={`form-${id}`}>
      <h2 id={id}>{title}</h2>
      {children}
      {note && !note.ok ? <p className="error" role="alert">{note.text}</p> : null}
      {note?.ok ? <Saved /> : null}
      <button type="submit" disabled={busy}>{button}</button>
    </form>
  );
}

function Saved() {
  const { t } = useT();
  return <p role="status">{t("saved")}</p>;
}
