import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Error-tolerant Java client for the integration tests (testenv/probe.go): runs a
 * script of steps in one JVM, each step with its own client properties (TLS,
 * SASL), and reports what the client saw, errors included, instead of failing.
 *
 * Step lines on stdin (tab-separated; bytes as in KsealKeys.java: "-" null, ":"hex):
 *   consume bootstrap propsHex topic partition offset n timeoutMs
 *   produce bootstrap propsHex topic partition key value headers
 * propsHex is the hex of a java.util.Properties text ("k=v" lines).
 *
 * Output lines (tab-separated), step is the 0-based step number:
 *   R step partition offset key value headers   a consumed record
 *   P step partition offset                     a produced record's position
 *   E step exception-class: message             the step's error (ends the step)
 *   D step count                                the step ended
 */
public class KsealProbe {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        int step = 0;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split("\t", -1);
            try {
                switch (f[0]) {
                    case "consume":
                        consume(step, f);
                        break;
                    case "produce":
                        produce(step, f);
                        break;
                    default:
                        throw new IllegalArgumentException("step " + f[0]);
                }
            } catch (Exception e) {
                Throwable c = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
                out("E\t" + step + "\t" + c.getClass().getName() + ": " + String.valueOf(c.getMessage()).replace('\n', ' ').replace('\t', ' '));
            }
            step++;
        }
    }

    static synchronized void out(String s) {
        System.out.println(s);
        System.out.flush();
    }

    static Properties props(String bootstrap, String hex) throws Exception {
        Properties p = new Properties();
        byte[] b = ProbeCodec.dec(":" + hex);
        p.load(new StringReader(new String(b, StandardCharsets.UTF_8)));
        p.put("bootstrap.servers", bootstrap);
        return p;
    }

    static void consume(int step, String[] f) throws Exception {
        Properties p = props(f[1], f[2]);
        p.put("group.id", "probe-" + UUID.randomUUID());
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        TopicPartition tp = new TopicPartition(f[3], Integer.parseInt(f[4]));
        long offset = Long.parseLong(f[5]);
        int n = Integer.parseInt(f[6]);
        long deadline = System.currentTimeMillis() + Long.parseLong(f[7]);
        int got = 0;
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            c.assign(List.of(tp));
            c.seek(tp, offset);
            while (got < n && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> rs = c.poll(Duration.ofMillis(300));
                for (ConsumerRecord<byte[], byte[]> r : rs) {
                    got++;
                    StringBuilder hs = new StringBuilder();
                    for (Header h : r.headers()) {
                        if (hs.length() > 0) {
                            hs.append(',');
                        }
                        hs.append(ProbeCodec.enc(h.key().getBytes(StandardCharsets.UTF_8)).substring(1)).append('=').append(ProbeCodec.enc(h.value()));
                    }
                    out("R\t" + step + "\t" + r.partition() + "\t" + r.offset() + "\t" + ProbeCodec.enc(r.key()) + "\t" + ProbeCodec.enc(r.value()) + "\t" + hs);
                }
            }
        }
        out("D\t" + step + "\t" + got);
    }

    static void produce(int step, String[] f) throws Exception {
        Properties p = props(f[1], f[2]);
        p.put("acks", "all");
        p.put("retries", "0");
        p.put("enable.idempotence", "false");
        p.put("delivery.timeout.ms", "20000");
        p.put("request.timeout.ms", "10000");
        p.put("max.block.ms", "15000");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        int part = Integer.parseInt(f[4]);
        RecordHeaders hs = new RecordHeaders();
        if (!f[7].isEmpty()) {
            for (String item : f[7].split(",", -1)) {
                int eq = item.indexOf('=');
                byte[] name = ProbeCodec.dec(":" + item.substring(0, eq));
                hs.add(new String(name, StandardCharsets.UTF_8), ProbeCodec.dec(item.substring(eq + 1)));
            }
        }
        try (KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p)) {
            RecordMetadata md = prod.send(new ProducerRecord<>(f[3], part < 0 ? null : part, null,
                    ProbeCodec.dec(f[5]), ProbeCodec.dec(f[6]), hs)).get();
            out("P\t" + step + "\t" + md.partition() + "\t" + md.offset());
        }
        out("D\t" + step + "\t1");
    }
}

/** The bytes codec of KsealKeys.java, repeated so that each source compiles alone. */
class ProbeCodec {
    static byte[] dec(String s) {
        if (s.equals("-")) {
            return null;
        }
        if (!s.startsWith(":")) {
            throw new IllegalArgumentException("bytes field " + s);
        }
        byte[] b = new byte[(s.length() - 1) / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(s.substring(1 + 2 * i, 3 + 2 * i), 16);
        }
        return b;
    }

    static String enc(byte[] b) {
        if (b == null) {
            return "-";
        }
        StringBuilder sb = new StringBuilder(":");
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }
}
