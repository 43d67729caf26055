export function memoryStore(initial = {}) {
    const data = new Map(Object.entries(initial));
    return {
        data,
        get: async (k) => data.get(k),
        set: async (k, v) => void data.set(k, v),
        delete: async (k) => void data.delete(k),
    };
}
