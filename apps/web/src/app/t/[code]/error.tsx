"use client";
// The tip page's error boundary. A Pay whose answer was lost (the connection dropped after the server had started
// the tip) ended in Next's bare "Application error". Now the customer is told what may have happened, and trying
// again opens the form afresh: the same tip asked again is the same tip (tip-seed.ts), not a second M-Pesa prompt.
import { useEffect, useState } from "react";
import { translator, type Locale } from "../../../lib/i18n";

export default function TipPageError() {
  const [locale, setLocale] = useState<Locale>("en");
  useEffect(() => setLocale(document.documentElement.lang === "sw" ? "sw" : "en"), []);
  const t = translator(locale);
  return (
    <main>
      <p className="notice bad" role="alert">{t("err_lostAnswer")}</p>
      <button type="button" className="button" onClick={() => location.reload()}>{t("tryAgain")}</button>
    </main>
  );
}
