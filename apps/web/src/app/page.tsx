import Link from "next/link";

export default function Home() {
  return (
    <main>
      <h1>TTIP</h1>
      <p>Tip the people who serve you, by M-Pesa. Scan a worker&apos;s QR code to open their tip page.</p>
      <p>
        <Link href="/w">Workers: sign in</Link>
      </p>
    </main>
  );
}
