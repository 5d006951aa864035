// Starts a Kroxylicious proxy from a YAML config file, for scripts/bench.sh.
//
// Kroxylicious' own app module (io.kroxylicious:kroxylicious-app, main class
// io.kroxylicious.app.Kroxylicious) is not published on the Maven Central
// this project can reach, but its runtime, filter and KMS modules are. This
// launcher does what the app's main does for `--config FILE`: parse the file
// with the runtime's ConfigParser and run a KafkaProxy with the default
// feature set until the JVM is told to stop. No metrics endpoint, no CLI.
//
//   java -cp 'classes:libs/*' Launcher CONFIG.yaml
import io.kroxylicious.proxy.KafkaProxy;
import io.kroxylicious.proxy.config.ConfigParser;
import io.kroxylicious.proxy.config.Configuration;
import io.kroxylicious.proxy.internal.config.Features;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;

public final class Launcher {
    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: Launcher CONFIG.yaml");
            System.exit(2);
        }
        ConfigParser parser = new ConfigParser();
        Configuration config;
        try (InputStream in = Files.newInputStream(Path.of(args[0]))) {
            config = parser.parseConfiguration(in);
        }
        KafkaProxy proxy = new KafkaProxy(parser, config, Features.defaultFeatures());
        // SIGTERM/SIGINT: close the listeners and the event loops, then exit.
        Runtime.getRuntime().addShutdownHook(new Thread(proxy::shutdown, "launcher-shutdown"));
        proxy.startup();
        System.err.println("Launcher: proxy started");
        proxy.block();
    }
}
