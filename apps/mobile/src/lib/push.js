// Push: the device's own token (FCM on Android, APNs on iOS) registered with the
// notification service, which sends "tip received" through the provider; a push
// that arrives while the app is open shows as a banner and refreshes home.
import * as Notifications from "expo-notifications";
import { Platform } from "react-native";
Notifications.setNotificationHandler({
    handleNotification: async () => ({ shouldShowBanner: true, shouldShowList: true, shouldPlaySound: true, shouldSetBadge: false }),
});
export const phonePush = {
    async token() {
        if (Platform.OS !== "ios" && Platform.OS !== "android")
            return undefined;
        try {
            let { status } = await Notifications.getPermissionsAsync();
            if (status !== "granted")
                status = (await Notifications.requestPermissionsAsync()).status;
            if (status !== "granted")
                return undefined;
            if (Platform.OS === "android") {
                await Notifications.setNotificationChannelAsync("tips", { name: "Tips", importance: Notifications.AndroidImportance.HIGH });
            }
            const t = await Notifications.getDevicePushTokenAsync();
            return typeof t.data === "string" ? { token: t.data, platform: Platform.OS } : undefined;
        }
        catch {
            // Expo Go on Android has no remote push since SDK 53; a development build has.
            return undefined;
        }
    },
    onNotification(listener) {
        const sub = Notifications.addNotificationReceivedListener((n) => listener(n.request.content.title ?? "", n.request.content.body ?? ""));
        return () => sub.remove();
    },
};
