"use client";
import { useRef, useState, type ReactNode } from "react";
import { focusInput } from "../../../lib/focus";
import { useWrite } from "../../../lib/use-write";
import { useT } from "../use-t";

/** A form's refusal: what to say, and the input it is about (the focus goes there). */
export interface Refusal {
  text: string;
  input?: string;
}

/** What a form shows and keeps as it is: its read. Failed, the form is not drawn (see Section). */
export interface SectionRead {
  data: unknown;
  error: unknown;
  refetch: () => Promise<unknown>;
}

/**
 * One form of the settings screen: its own message and error, so saving one never hides another's. `read`: the
 * query its inputs start from. When it failed, the form is not offered, only the error and a way to read again:
 * drawn empty, a save sent what it showed (automatic payouts off, quiet hours and notifications cleared).
 */
export function Section(props: { title: string; id: string; onSubmit: (f: FormData) => Promise<Refusal | undefined>; children: ReactNode; button: string; read?: SectionRead }) {
  const { t, err } = useT();
  const { read, title, id } = props;
  // No data: the read failed (the page waits for every first read), or is being made again after it failed.
  if (read && read.data === undefined) {
    return (
      <section aria-labelledby={id} data-testid={`form-${id}`}>
        <h2 id={id}>{title}</h2>
        {read.error ? <p className="error" role="alert">{t("settingsUnread", { reason: err(read.error) })}</p> : <p>{t("loading")}</p>}
        <button type="button" className="secondary" onClick={() => void read.refetch()}>{t("readAgain")}</button>
      </section>
    );
  }
  return <SectionForm {...props} />;
}

function SectionForm({ title, id, onSubmit, children, button }: { title: string; id: string; onSubmit: (f: FormData) => Promise<Refusal | undefined>; children: ReactNode; button: string }) {
  const [note, setNote] = useState<{ ok: boolean; text: string }>();
  const { busy, onSubmit: guarded } = useWrite();
  const formRef = useRef<HTMLFormElement>(null);
  const submit = guarded(async (form) => {
    setNote(undefined);
    const problem = await onSubmit(form);
    setNote(problem ? { ok: false, text: problem.text } : { ok: true, text: "" });
    focusInput(formRef.current, problem?.input);
  });
  return (
    <form ref={formRef} onSubmit={submit} noValidate aria-labelledby={id} data-testid={`form-${id}`}>
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
