// CreateTopics creates the benchmark's topics in one JVM start (the broker has
// auto.create.topics.enable=false, and one kafka-topics run per topic would
// cost a JVM start each). Run with Java's single-file source launcher:
//
//   java -cp '<kafka libs>/*' bench/CreateTopics.java BOOTSTRAP PARTITIONS TOPIC...
//
// It fails (exit 1) if any topic cannot be created; it never deletes anything.
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;

public class CreateTopics {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: CreateTopics BOOTSTRAP PARTITIONS TOPIC...");
            System.exit(2);
        }
        int partitions = Integer.parseInt(args[1]);
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 2; i < args.length; i++) {
            topics.add(new NewTopic(args[i], partitions, (short) 1));
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        try (Admin admin = Admin.create(p)) {
            admin.createTopics(topics).all().get(60, TimeUnit.SECONDS);
        }
    }
}
