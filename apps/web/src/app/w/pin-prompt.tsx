"use client";
// The PIN asked for when this browser's key is added (auth adds one only with the PIN itself): a small form of its
// own, shown beside the screen's, while the step-up waits for it.
import { useEffect, useState, type ReactNode } from "react";
import { PIN } from "../../lib/forms";
import { PinRequest, type AskPin } from "../../lib/step-up-flow";
import { useT } from "./use-t";

export function usePinPrompt(): { askPin: AskPin; pinPrompt: ReactNode } {
  const { t } = useT();
  const [asking, setAsking] = useState(false);
  const [problem, setProblem] = useState("");
  const [request] = useState(() => new PinRequest((shown) => (setAsking(shown), setProblem(""))));
  useEffect(() => () => request.decline(), [request]);

  const pinPrompt = asking ? (
    <form
      aria-label={t("keyPinContinue")}
      className="notice"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        const pin = String(new FormData(e.currentTarget).get("keyPin") ?? "");
        if (!PIN.test(pin)) return setProblem(t("keyPinInvalid"));
        request.answer(pin);
      }}
    >
      <p>{t("keyPinAsk")}</p>
      <label className="field" htmlFor="keyPin">{t("keyPinLabel")}</label>
      <input id="keyPin" name="keyPin" type="password" inputMode="numeric" autoComplete="current-password" maxLength={6} autoFocus />
      {problem ? <p className="error" role="alert">{problem}</p> : null}
      <button type="submit">{t("keyPinContinue")}</button>{" "}
      <button type="button" className="secondary" onClick={() => request.decline()}>{t("keyPinCancel")}</button>
    </form>
  ) : null;
  return { askPin: request.ask, pinPrompt };
}
