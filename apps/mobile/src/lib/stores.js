// The phone's stores: expo-secure-store (Keychain / Keystore) for secrets,
// AsyncStorage for the offline cache.
import AsyncStorage from "@react-native-async-storage/async-storage";
import * as SecureStore from "expo-secure-store";
// Secure-store keys allow only [A-Za-z0-9._-].
const safe = (key) => key.replace(/[^A-Za-z0-9._-]/g, "_");
export const secureStore = {
    get: async (k) => (await SecureStore.getItemAsync(safe(k))) ?? undefined,
    set: (k, v) => SecureStore.setItemAsync(safe(k), v, { keychainAccessible: SecureStore.WHEN_UNLOCKED_THIS_DEVICE_ONLY }),
    delete: (k) => SecureStore.deleteItemAsync(safe(k)),
};
export const cacheStore = {
    get: async (k) => (await AsyncStorage.getItem(k)) ?? undefined,
    set: (k, v) => AsyncStorage.setItem(k, v),
    delete: (k) => AsyncStorage.removeItem(k),
};
