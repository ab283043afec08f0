// EchoServer.java - thread-per-connection TCP echo server in Java: the
// JVM's own threads (GC, JIT, signal dispatcher) and one java.lang.Thread
// per connection, blocking reads and writes.  Ends on SIGTERM as a JVM
// does (shutdown hooks, exit status 143).
//
// Usage: java -cp DIR EchoServer PORT
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;

public class EchoServer {
    public static void main(String[] args) throws IOException {
        ServerSocket ss = new ServerSocket();
        ss.setReuseAddress(true);
        ss.bind(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 4096);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> System.err.println("EchoServer: shutting down")));
        for (;;) {
            Socket s = ss.accept();
            Thread t = new Thread(() -> serve(s));
            t.setDaemon(true);
            t.start();
        }
    }

    static void serve(Socket s) {
        try (s; InputStream in = s.getInputStream(); OutputStream out = s.getOutputStream()) {
            byte[] buf = new byte[4096];
            for (int n; (n = in.read(buf)) > 0;) out.write(buf, 0, n);
        } catch (IOException e) {
            // the peer went away: the thread ends
        }
    }
}
