// Weekly maintenance windows with scripted times in a fixed time zone: which days and hours they cover, one that
// crosses midnight, and bad windows refused saying how to write one.
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/service/silences.hpp>

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

using namespace mqtt_presence;
using namespace std::chrono_literals;

namespace {

// A UTC time of the week of Sunday 2026-12-06.
time_point at(int mday, int hour, int minute) {
    std::tm tm{};
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 11;
    tm.tm_mday = mday;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    return clock::from_time_t(timegm(&tm));
}

class recurring : public ::testing::Test {
protected:
    void SetUp() override {
        setenv("TZ", "UTC", 1);  // the windows are in the service's local time
        tzset();
    }
};

TEST_F(recurring, a_weekly_window_covers_its_days_and_hours_only) {
    silence_book book;
    book.recurring({recurring_silence::parse("group:garage Sun 02:00-04:00 weekly backup"),
                    recurring_silence::parse("boiler Mon-Fri 22:00-06:00 night")});
    EXPECT_TRUE(book.covering("door", {"garage"}, at(6, 2, 0))) << "Sunday 02:00";
    EXPECT_TRUE(book.covering("door", {"garage"}, at(6, 3, 59)));
    EXPECT_FALSE(book.covering("door", {"garage"}, at(6, 4, 0))) << "the end is not in it";
    EXPECT_FALSE(book.covering("door", {"garage"}, at(7, 3, 0))) << "Monday";
    EXPECT_FALSE(book.covering("kitchen", {}, at(6, 3, 0))) << "not the target";
    const auto night = book.covering("boiler", {}, at(8, 3, 0));  // Tuesday 03:00: Monday's night
    ASSERT_TRUE(night);
    EXPECT_EQ(night->from, at(7, 22, 0));
    EXPECT_EQ(night->until, at(8, 6, 0));
    EXPECT_EQ(night->by, "configuration");
    EXPECT_EQ(night->reason, "night");
    EXPECT_FALSE(book.covering("boiler", {}, at(7, 3, 0))) << "Monday 03:00: Sunday's night is not one";
    EXPECT_TRUE(book.covering("boiler", {}, at(12, 5, 0))) << "Saturday 05:00: Friday's night";
    EXPECT_EQ(book.active(at(6, 3, 0)).size(), 1u) << "listed while open";
    EXPECT_TRUE(book.active(at(6, 5, 0)).empty());
}

TEST_F(recurring, days_are_a_day_a_range_a_list_or_daily) {
    EXPECT_EQ(recurring_silence::parse("a daily 01:00-02:00 r").days, 0x7F);
    EXPECT_EQ(recurring_silence::parse("a Sat,Sun 01:00-02:00 r").days, 0x41);
    EXPECT_EQ(recurring_silence::parse("a Fri-Mon 01:00-02:00 r").days, 0x63) << "a range across the week's end";
    for (const char* bad : {"a Funday 01:00-02:00 r", "a Sun 1-2 r", "a Sun 01:00-01:00 r", "a Sun 25:00-26:00 r",
                            "a Sun 01:00-02:00", "a"}) {
        try {
            (void)recurring_silence::parse(bad);
            ADD_FAILURE() << "accepted " << bad;
        } catch (const error& e) {
            EXPECT_NE(std::string(e.what()).find("write e.g."), std::string::npos) << e.what();
        }
    }
}

}  // namespace
