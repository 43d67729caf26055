// After a refused form, the focus goes to the field to correct (as the tip page does): the button
// that sent it is disabled while it is sent, so the focus fell to the page and the person (or a
// screen reader) had to find the field again.
import { Code, ConnectError } from "@connectrpc/connect";
import { messageField } from "./errors";

/**
 * The field an API refusal names, without list indexes ("preferences.quiet_hours_start: …" gives
 * "preferences.quiet_hours_start"), as plainError reads it; undefined for other refusals.
 */
export function refusedField(err: unknown): string | undefined {
  const e = ConnectError.from(err);
  if (e.code !== Code.InvalidArgument) return undefined;
  return messageField(e.rawMessage)?.replace(/\[\d+\]/g, "");
}

/** Focuses the input of `form` named `name`, when there is one. */
export function focusInput(form: HTMLFormElement | null | undefined, name: string | undefined): void {
  const input = name ? form?.elements.namedItem(name) : null;
  if (input instanceof HTMLElement) input.focus();
}

/**
 * Focuses the input of `form` that `problem` is about: a check's message key or a refusal's field,
 * looked up in `inputs` (problem → the input's name). Nothing when the problem names no input.
 */
export function focusProblem(form: HTMLFormElement | null | undefined, inputs: Readonly<Record<string, string>>, problem: string | undefined): void {
  focusInput(form, problem === undefined ? undefined : inputs[problem]);
}
