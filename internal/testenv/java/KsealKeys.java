import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Future;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Byte-exact Java client for the integration tests (testenv/javakeys.go): keys,
 * values and header values may be null, empty or binary, header names repeat.
 *
 * Line format (tab-separated): bytes are "-" for null or ":" followed by hex
 * (":" alone is empty); headers are "hexname=bytes" items joined by ",".
 *
 *   produce   bootstrap topic           stdin "partition key value headers" (partition -1:
 *                                       the producer's partitioner), stdout "partition offset"
 *                                       per record, in input order
 *   consume   bootstrap topic n group   stdout "partition offset key value headers"
 *   aggregate bootstrap topic n group   sums the decimal values per key as a consumer of
 *                                       group, commits, stdout "key sum count" sorted by key
 */
public class KsealKeys {
    public static void main(String[] args) throws Exception {
        String mode = args[0], bootstrap = args[1], topic = args[2];
        switch (mode) {
            case "produce":
                produce(bootstrap, topic);
                break;
            case "consume":
            case "aggregate":
                consume(bootstrap, topic, Integer.parseInt(args[3]), args[4], mode.equals("aggregate"));
                break;
            default:
                throw new IllegalArgumentException("mode " + mode);
        }
    }

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

    static void produce(String bootstrap, String topic) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("acks", "all");
        p.put("linger.ms", "5");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p);
             BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isEmpty()) {
                    continue;
                }
                String[] f = line.split("\t", -1);
                int part = Integer.parseInt(f[0]);
                RecordHeaders hs = new RecordHeaders();
                if (!f[3].isEmpty()) {
                    for (String item : f[3].split(",", -1)) {
                        int eq = item.indexOf('=');
                        byte[] name = dec(":" + item.substring(0, eq));
                        hs.add(new String(name, StandardCharsets.UTF_8), dec(item.substring(eq + 1)));
                    }
                }
                fs.add(prod.send(new ProducerRecord<>(topic, part < 0 ? null : part, null, dec(f[1]), dec(f[2]), hs)));
            }
            prod.flush();
            for (Future<RecordMetadata> f : fs) {
                RecordMetadata md = f.get();
                System.out.println(md.partition() + "\t" + md.offset());
            }
        }
    }

    static void consume(String bootstrap, String topic, int n, String group, boolean aggregate) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        Map<String, long[]> sums = new TreeMap<>();
        int got = 0;
        long deadline = System.currentTimeMillis() + 60_000;
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            c.subscribe(List.of(topic));
            while (got < n) {
                if (System.currentTimeMillis() > deadline) {
                    System.err.println("consume: " + got + " of " + n + " records after 60s");
                    System.exit(1);
                }
                ConsumerRecords<byte[], byte[]> rs = c.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : rs) {
                    got++;
                    if (aggregate) {
                        long[] s = sums.computeIfAbsent(enc(r.key()), k -> new long[2]);
                        s[0] += Long.parseLong(new String(r.value(), StandardCharsets.UTF_8));
                        s[1]++;
                        continue;
                    }
                    StringBuilder hs = new StringBuilder();
                    for (Header h : r.headers()) {
                        if (hs.length() > 0) {
                            hs.append(',');
                        }
                        hs.append(enc(h.key().getBytes(StandardCharsets.UTF_8)).substring(1)).append('=').append(enc(h.value()));
                    }
                    System.out.println(r.partition() + "\t" + r.offset() + "\t" + enc(r.key()) + "\t" + enc(r.value()) + "\t" + hs);
                }
            }
            c.commitSync();
        }
        for (Map.Entry<String, long[]> e : sums.entrySet()) {
            System.out.println(e.getKey() + "\t" + e.getValue()[0] + "\t" + e.getValue()[1]);
        }
    }
}
