function local(prefix) {
    return {
        get: async (k) => window.localStorage.getItem(prefix + k) ?? undefined,
        set: async (k, v) => window.localStorage.setItem(prefix + k, v),
        delete: async (k) => window.localStorage.removeItem(prefix + k),
    };
}
export const secureStore = local("ttip_secure:");
export const cacheStore = local("ttip_cache:");
