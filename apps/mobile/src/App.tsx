// The worker's app: sign in, then five tabs. The outside world (gateway, stores,
// biometrics, push) comes in through AppServices and a transport factory, so the
// tests run the same tree against a fake gateway.
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { TransportProvider, useTransport } from "@connectrpc/connect-query";
import { QueryClient, QueryClientProvider, useQueryClient } from "@tanstack/react-query";
import { StatusBar } from "expo-status-bar";
import { useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { Pressable, Text, View } from "react-native";
import { SafeAreaProvider, SafeAreaView } from "react-native-safe-area-context";
import { AppContext, useApp, type AppServices } from "./app-context";
import { I18nContext, translator, useI18n, type Locale, type MessageKey } from "./lib/i18n";
import type { Session } from "./lib/session";
import { flushPreferences } from "./lib/pending-settings";
import { authInterceptor } from "./lib/transport";
import { History } from "./screens/History";
import { Home } from "./screens/Home";
import { Inbox } from "./screens/Inbox";
import { MyQr } from "./screens/MyQr";
import { usePushRegistration } from "./screens/push-registration";
import { Settings } from "./screens/Settings";
import { SignIn } from "./screens/SignIn";
import { Statements } from "./screens/Statements";
import { Withdraw } from "./screens/Withdraw";
import { colors } from "./ui";

/** Screens opened from a tab, over it. */
type Overlay = "inbox" | "statements";

/** Makes the gateway transport with the given interceptors (tests: a router transport). */
export type TransportFactory = (interceptors: Interceptor[]) => Transport;

const TABS: { id: string; label: MessageKey; screen: (open: (overlay: Overlay) => void) => ReactNode }[] = [
  { id: "home", label: "tabHome", screen: (open) => <Home onOpenInbox={() => open("inbox")} /> },
  { id: "history", label: "tabHistory", screen: (open) => <History onOpenStatements={() => open("statements")} /> },
  { id: "withdraw", label: "tabWithdraw", screen: () => <Withdraw /> },
  { id: "qr", label: "tabQr", screen: () => <MyQr /> },
  { id: "settings", label: "tabSettings", screen: () => <Settings /> },
];
const LOCALE_SLOT = "settings:locale";
/**
 * This install's mark, in the app's own storage (the cache), which goes with the app when it is removed; the secure
 * store may not. Set once a removed install's session and key are gone, and at each sign-in.
 */
const INSTALLED_SLOT = "app:installed";

/**
 * A session found with no mark of this install in the cache was left by an install since removed: iOS keeps the
 * Keychain (the secure store) after an app is deleted, so whoever installed it next opened as that worker, their
 * device key approving withdrawals to any number. Its key forgotten and the session ended; true when both went.
 * (An install from before the mark existed is signed out once too.)
 */
async function forgetRemovedInstall(services: AppServices, userId: string): Promise<boolean> {
  const keyGone = await services.keyring().then((keys) => keys.forget(userId)).then(() => true, () => false);
  const sessionGone = await services.sessions.clear().then(() => true, () => false);
  return keyGone && sessionGone;
}

const markInstalled = (services: AppServices) => services.cache.set(INSTALLED_SLOT, "1").catch(() => undefined);
/** How often a settings change made offline is tried again. */
export const SETTINGS_RETRY_MS = 5_000;

export function AppRoot({ services, transport: makeTransport, deviceLocale }: { services: AppServices; transport: TransportFactory; deviceLocale: Locale }) {
  const [locale, setLocaleState] = useState<Locale>(deviceLocale);
  const localeRef = useRef(locale);
  localeRef.current = locale;
  const [session, setSession] = useState<Session | undefined>();
  const [ready, setReady] = useState(false);
  const [queryClient] = useState(() => new QueryClient({ defaultOptions: { queries: { retry: false }, mutations: { retry: false } } }));
  const transport = useMemo(() => {
    // The refresh call itself goes through a transport without the interceptor.
    const plain = makeTransport([]);
    return makeTransport([authInterceptor(services.sessions, () => plain, () => localeRef.current)]);
  }, [makeTransport, services.sessions]);

  useEffect(() => {
    let started = false;
    const off = services.sessions.subscribe((s) => {
      setSession(s);
      if (!s) queryClient.clear(); // nothing of one worker's stays on screen for the next
      // Marked at a sign-in too: a mark not written at the first start (the storage full) signed the worker out at the next.
      else if (started) void markInstalled(services);
    });
    void (async () => {
      const chosen = await services.cache.get(LOCALE_SLOT).catch(() => undefined);
      if (chosen === "en" || chosen === "sw") setLocaleState(chosen);
      // Unreadable (the cache failing), the mark is taken as there: a storage error signs no one out.
      const installed = await services.cache.get(INSTALLED_SLOT).then((mark) => mark !== undefined, () => true);
      // Marked only once whatever a removed install left is gone; until then, each start tries again.
      let settled = false;
      try {
        const restored = await services.sessions.restore();
        // A first sign-in interrupted before the PIN was chosen starts again.
        if (restored?.pinPending) await services.sessions.clear();
        settled = !restored || restored.pinPending || installed || (await forgetRemovedInstall(services, restored.userId));
      } catch {
        // The secure store unreadable (a keystore error, a value spoiled): signed out for this start, what it holds left
        // as it is (the next start reads it again), where the screen stayed blank at every launch.
      }
      if (!installed && settled) await markInstalled(services);
      // As the store says now: a session cleared whose delete failed is not shown either.
      setSession(services.sessions.get());
      started = true;
      setReady(true);
    })();
    return off;
  }, [services, queryClient]);

  const i18n = useMemo(
    () => ({
      locale,
      t: translator(locale),
      setLocale: (l: Locale) => {
        setLocaleState(l);
        void services.cache.set(LOCALE_SLOT, l);
      },
    }),
    [locale, services.cache],
  );

  return (
    <SafeAreaProvider>
      <AppContext.Provider value={services}>
        <I18nContext.Provider value={i18n}>
          <TransportProvider transport={transport}>
            <QueryClientProvider client={queryClient}>
              <SafeAreaView style={{ flex: 1, backgroundColor: colors.paper }}>
                <StatusBar style="dark" />
                {!ready ? null : session && !session.pinPending ? <SignedIn key={session.userId} /> : <SignIn />}
              </SafeAreaView>
            </QueryClientProvider>
          </TransportProvider>
        </I18nContext.Provider>
      </AppContext.Provider>
    </SafeAreaProvider>
  );
}

function SignedIn() {
  const [tab, setTab] = useState("home");
  const [overlay, setOverlay] = useState<Overlay | undefined>();
  const { t } = useI18n();
  const { push } = useApp();
  const queryClient = useQueryClient();
  const registration = usePushRegistration();
  // Register this phone for tip notifications once per session; a refusal is not an error.
  const { register } = registration;
  useEffect(() => void register().catch(() => undefined), [register]);
  // Settings changed offline are sent once the gateway answers again.
  const { cache, sessions } = useApp();
  const transport = useTransport();
  useEffect(() => {
    const userId = sessions.get()?.userId;
    if (!userId) return;
    const client = createClient(NotificationService, transport);
    const flush = () => void flushPreferences(cache, userId, client, () => sessions.get()?.userId).catch(() => undefined);
    flush();
    const timer = setInterval(flush, SETTINGS_RETRY_MS);
    return () => clearInterval(timer);
  }, [cache, sessions, transport]);
  // A push while the app is open: refresh what home shows.
  useEffect(() => push.onNotification(() => void queryClient.invalidateQueries()), [push, queryClient]);
  const current = TABS.find((x) => x.id === tab) ?? TABS[0];
  return (
    <View style={{ flex: 1 }}>
      <View style={{ flex: 1 }}>{overlay === "inbox" ? (
          <Inbox onClose={() => setOverlay(undefined)} />
        ) : overlay === "statements" ? (
          <Statements onClose={() => setOverlay(undefined)} />
        ) : (
          current.screen(setOverlay)
        )}</View>
      <View role="tablist" style={{ flexDirection: "row", borderTopWidth: 1, borderColor: colors.muted }}>
        {TABS.map((x) => (
          <Pressable
            key={x.id}
            testID={`tab-${x.id}`}
            role="tab"
            aria-selected={x.id === tab}
            onPress={() => (setTab(x.id), setOverlay(undefined))}
            style={{ flex: 1, paddingVertical: 12, alignItems: "center", minHeight: 48 }}
          >
            <Text style={{ color: x.id === tab ? colors.brand : colors.ink, fontWeight: x.id === tab ? "700" : "400", fontSize: 13 }}>{t(x.label)}</Text>
          </Pressable>
        ))}
      </View>
    </View>
  );
}
