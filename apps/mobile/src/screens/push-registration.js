// The push token registered with the notification service once per signed-in session
// (and again when the worker turns notifications on in settings).
import { createClient } from "@connectrpc/connect";
import { useTransport } from "@connectrpc/connect-query";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { useCallback, useSyncExternalStore } from "react";
import { useApp } from "../app-context";
// Shared by every screen in this app instance: the token registered and for whom.
let registered;
const listeners = new Set();
const emit = () => listeners.forEach((l) => l());
export function usePushRegistration() {
    const { push, sessions } = useApp();
    const transport = useTransport();
    const userId = sessions.get()?.userId;
    const current = useSyncExternalStore((l) => (listeners.add(l), () => void listeners.delete(l)), () => registered);
    const register = useCallback(async () => {
        if (!userId)
            return false;
        const token = await push.token();
        if (!token)
            return false;
        await createClient(NotificationService, transport).registerPushToken({ token: token.token, platform: token.platform });
        registered = { userId, token };
        emit();
        return true;
    }, [push, transport, userId]);
    const unregister = useCallback(async () => {
        const r = registered;
        registered = undefined;
        emit();
        if (r)
            await createClient(NotificationService, transport).unregisterPushToken({ token: r.token.token });
    }, [transport]);
    return { registered: current !== undefined && current.userId === userId, register, unregister };
}
/** For tests: forget the process-wide registration. */
export function resetPushRegistration() {
    registered = undefined;
    emit();
}
