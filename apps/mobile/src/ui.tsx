// The few building blocks every screen uses: large touch targets, plain text, high contrast.
import type { ReactNode } from "react";
import { Pressable, ScrollView, StyleSheet, Text, TextInput, View, type TextInputProps } from "react-native";

export const colors = { ink: "#1b1b1b", muted: "#5c5c5c", brand: "#0a7d3b", error: "#b00020", paper: "#ffffff", note: "#eef6f0", warn: "#fff4d6" };

export function Screen({ children, testID }: { children: ReactNode; testID?: string }) {
  return (
    <ScrollView testID={testID} contentContainerStyle={styles.screen} keyboardShouldPersistTaps="handled">
      {children}
    </ScrollView>
  );
}

export function Title({ children }: { children: ReactNode }) {
  return <Text role="heading" style={styles.title}>{children}</Text>;
}

export function Field({ label, id, ...input }: { label: string; id: string } & TextInputProps) {
  return (
    <View style={styles.field}>
      <Text nativeID={`${id}-label`} style={styles.label}>{label}</Text>
      <TextInput testID={id} accessibilityLabel={label} aria-labelledby={`${id}-label`} style={styles.input} autoCorrect={false} {...input} />
    </View>
  );
}

/** `label`: what a screen reader says when the title is a symbol. */
export function Button({ title, label, onPress, disabled, kind = "primary", testID }: { title: string; label?: string; onPress(): void; disabled?: boolean; kind?: "primary" | "secondary"; testID?: string }) {
  return (
    <Pressable
      testID={testID}
      role="button"
      aria-label={label}
      accessibilityState={{ disabled: !!disabled }}
      disabled={disabled}
      onPress={onPress}
      style={[styles.button, kind === "secondary" && styles.secondary, disabled && styles.disabled]}
    >
      <Text style={[styles.buttonText, kind === "secondary" && styles.secondaryText]}>{title}</Text>
    </Pressable>
  );
}

export function ErrorText({ children }: { children: ReactNode }) {
  return children ? <Text role="alert" style={styles.error}>{children}</Text> : null;
}

export function Notice({ children, tone = "note", testID }: { children: ReactNode; tone?: "note" | "warn"; testID?: string }) {
  return <View testID={testID} style={[styles.notice, tone === "warn" && { backgroundColor: colors.warn }]}>{children}</View>;
}

export const styles = StyleSheet.create({
  screen: { padding: 16, gap: 12, backgroundColor: colors.paper, flexGrow: 1 },
  title: { fontSize: 24, fontWeight: "700", color: colors.ink },
  field: { gap: 4 },
  label: { fontSize: 16, color: colors.ink },
  input: { borderWidth: 1, borderColor: colors.muted, borderRadius: 8, padding: 12, fontSize: 18, color: colors.ink },
  button: { backgroundColor: colors.brand, borderRadius: 8, padding: 14, alignItems: "center", minHeight: 48 },
  secondary: { backgroundColor: colors.paper, borderWidth: 1, borderColor: colors.brand },
  disabled: { opacity: 0.5 },
  buttonText: { color: colors.paper, fontSize: 17, fontWeight: "600" },
  secondaryText: { color: colors.brand },
  error: { color: colors.error, fontSize: 16 },
  notice: { backgroundColor: colors.note, borderRadius: 8, padding: 12, gap: 4 },
  text: { fontSize: 16, color: colors.ink },
  muted: { fontSize: 14, color: colors.muted },
  big: { fontSize: 32, fontWeight: "700", color: colors.ink },
  row: { flexDirection: "row", justifyContent: "space-between", paddingVertical: 8, borderBottomWidth: StyleSheet.hairlineWidth, borderColor: colors.muted },
});
