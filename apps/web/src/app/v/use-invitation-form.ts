"use client";
import { focusInput, refusedField } from "../../lib/focus";
import { normaliseKenyanPhone } from "../../lib/phone";
import type { useSaidWrite } from "./use-said-write";
import { useVT } from "./use-vt";

/** How an invitation asked again had ended: the words for it. */
export type InvitationEnd = "v_inviteEndedWithdrawn" | "v_inviteEndedAccepted" | "v_inviteEndedLeft" | "v_managerInviteEndedAccepted";

/**
 * A venue's invitation by phone and name (to its staff, to manage it), on a screen whose writes `write` runs: its
 * inputs are checked before anything is sent, and a refusal focuses the input its field names (`inputs`: field to
 * input id). The same refusal, said with the focus on its input, serves the form's other checks.
 */
export function useInvitationForm(write: ReturnType<typeof useSaidWrite>, inputs: Readonly<Record<string, string>>) {
  const { t } = useVT();
  const refuse = (form: HTMLFormElement, input: string, text: string) => (write.setNote(""), write.setError(text), focusInput(form, input));
  /** The form's phone (07…) and name; undefined once the first one wrong is said. */
  const invitee = (form: HTMLFormElement, f: FormData): { phone: string; name: string } | undefined => {
    const phone = normaliseKenyanPhone(String(f.get("phone") ?? ""));
    const name = String(f.get("name") ?? "").trim();
    if (!phone) return void refuse(form, "phone", t("v_errPhone"));
    if (!name) return void refuse(form, "name", t("v_errName"));
    return { phone: `0${phone.slice(3)}`, name };
  };
  /**
   * Sends it under its key (kept for a retry of the same `intent`) and says how it went; the form is emptied once
   * sent. `ended`: the invitation the key made ended before this answer (a retry after a lost answer finds it so).
   */
  const send = (form: HTMLFormElement, name: string, intent: unknown[], call: (key: string) => Promise<{ invitationSent: boolean; ended?: InvitationEnd }>) =>
    void write.run(async (send) => {
      try {
        const res = await send(call);
        // Not "is invited" of one withdrawn or accepted meanwhile: the form is kept, to invite them anew if meant.
        if (res.ended) return t(res.ended, { name });
        form.reset();
        return res.invitationSent ? t("v_invited", { name }) : t("v_invitedNoSms", { name });
      } catch (err) {
        const field = refusedField(err);
        focusInput(form, field && inputs[field]);
        throw err;
      }
    }, JSON.stringify(intent));
  /** Texts a pending invitation (`id`) a new link under its key: a retry of a lost answer texts once. */
  const sendAgain = (name: string, id: string, call: (key: string) => Promise<{ invitationSent: boolean }>) =>
    void write.run(async (send) => ((await send(call)).invitationSent ? t("v_sentAgain", { name }) : t("v_sentAgainNoSms", { name })), JSON.stringify(["resend", id]));
  return { refuse, invitee, send, sendAgain };
}
