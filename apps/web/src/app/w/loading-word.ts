// "Loading…" in the language the request asks for (the chosen one, else the browser's), for the
// screens' first HTML: the layouts are rendered on the server, before any script runs.
import { cookies, headers } from "next/headers";
import { pickLocale } from "../../lib/i18n";
import { workerT } from "../../lib/worker-i18n";

export async function loadingWord(): Promise<string> {
  const locale = pickLocale((await cookies()).get("ttip_lang")?.value, (await headers()).get("accept-language"));
  return workerT(locale)("loading");
}
