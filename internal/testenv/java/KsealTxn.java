// KsealTxn drives a transactional Java KafkaProducer from a script on stdin,
// because the console producer cannot run transactions. Used by the kseal
// integration tests (internal/testenv).
//
// Usage: KsealTxn <bootstrap> <transactional.id> [producer.property=value...]
// stdin, one command a line:
//   begin
//   send <topic> <partition> <key> <value>     (partition -1: partitioner)
//   offsets <group> <topic> <partition> <offset>  (sendOffsetsToTransaction)
//   commit
//   abort
// Each command prints "ok <command>" when done; any failure exits non-zero.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

public class KsealTxn {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: KsealTxn <bootstrap> <transactional.id> [k=v...]");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, args[1]);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        for (int i = 2; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            p.initTransactions();
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) {
                    continue;
                }
                String[] f = line.split(" ", 5);
                switch (f[0]) {
                    case "begin" -> p.beginTransaction();
                    case "send" -> {
                        Integer part = Integer.parseInt(f[2]) < 0 ? null : Integer.valueOf(f[2]);
                        p.send(new ProducerRecord<>(f[1], part, f[3], f[4])).get();
                    }
                    case "offsets" -> p.sendOffsetsToTransaction(
                            Map.of(new TopicPartition(f[2], Integer.parseInt(f[3])),
                                    new OffsetAndMetadata(Long.parseLong(f[4]))),
                            new ConsumerGroupMetadata(f[1]));
                    case "commit" -> p.commitTransaction();
                    case "abort" -> p.abortTransaction();
                    default -> throw new IllegalArgumentException("unknown command: " + line);
                }
                System.out.println("ok " + f[0]);
                System.out.flush();
            }
        }
    }
}
